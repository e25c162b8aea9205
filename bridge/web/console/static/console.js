// sip-sms-bridge console: local times, live regions, copy buttons. No framework, no CDN.
"use strict";

function localTimes(root) {
  for (const el of root.querySelectorAll("time[datetime]")) {
    const d = new Date(el.getAttribute("datetime"));
    if (!isNaN(d)) {
      el.title = el.getAttribute("datetime");
      const today = d.toDateString() === new Date().toDateString();
      el.textContent = today ? d.toLocaleTimeString() : d.toLocaleString();
    }
  }
}

// Elements with data-live="N" are fetched again every N seconds (the same page, rendered by
// the server) and replaced when they changed: new texts and new states appear without a
// reload. Paused while the tab is hidden or while focus is inside the element.
function live() {
  const regions = [...document.querySelectorAll("[data-live]")]
    .filter((el) => el.id && Number(el.dataset.live) > 0);
  if (!regions.length) return;
  const every = Math.min(...regions.map((el) => Number(el.dataset.live))) * 1000;
  let busy = false;
  setInterval(async () => {
    if (busy || document.hidden) return;
    busy = true;
    try {
      const resp = await fetch(location.href, { credentials: "same-origin",
                                                headers: { "Accept": "text/html" } });
      if (resp.redirected || !resp.ok) { if (resp.redirected) location.reload(); return; }
      const doc = new DOMParser().parseFromString(await resp.text(), "text/html");
      for (const el of regions) {
        const fresh = doc.getElementById(el.id);
        if (!fresh || el.contains(document.activeElement)) continue;
        localTimes(fresh);
        if (fresh.innerHTML !== el.innerHTML) {
          el.innerHTML = fresh.innerHTML;
          bindCopy(el);
        }
      }
    } catch (e) {
      // the bridge restarting: try again at the next tick
    } finally {
      busy = false;
    }
  }, every);
}

function bindCopy(root) {
  for (const button of root.querySelectorAll("button[data-copy]")) {
    button.addEventListener("click", async () => {
      const input = document.getElementById(button.dataset.copy);
      try {
        await navigator.clipboard.writeText(input.value);
      } catch (e) {
        input.select();
        document.execCommand("copy");
      }
      button.textContent = "Copied";
      setTimeout(() => { button.textContent = "Copy"; }, 1500);
    });
  }
}

document.addEventListener("DOMContentLoaded", () => {
  localTimes(document);
  bindCopy(document);
  live();
});
