"""The web console in a real headless Chromium, against the bridge as a real process.

Two tenants (acme, globex) on trunk accounts whose PBX is a pjsua2 phone; carriers: the
sandbox, a sandbox with a secret webhook token ("relay"), and Twilio (signed webhooks, made
with Twilio's SDK). Known traffic is stored before the browser looks; each test then checks
one thing an admin does. Secrets are planted in the config and looked for in every page.
"""

from __future__ import annotations

import http.server
import json
import os
import pty
import re
import select
import stat
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from twilio.request_validator import RequestValidator

from bridge.store import Store, StoredMessage
from tests.browser import Browser
from tests.peers import configs
from tests.peers.harness import REPO, BridgeProcess, Phone, free_port, wait_until

ACME_DID, GLOBEX_DID, TWILIO_DID, RELAY_DID = (
    "+15551230001", "+15551230002", "+15551230003", "+15551230004")
ACME_REMOTE, GLOBEX_REMOTE = "+15557654321", "+15559990000"
ADMIN_TOKEN = "console-planted-admin-token-7c1e9a44"
RELAY_TOKEN = "console-planted-webhook-token-41d8e2"
UPLOAD_TOKEN = "console-planted-upload-token-a3f0b9"
PASSWORDS = {"ada": "ada-admin-password-1", "acme-admin": "acme-tenant-password-2",
             "globex-admin": "globex-tenant-password-3", "locked": "locked-user-password-4"}
ROLES = {"ada": ("admin", []), "acme-admin": ("tenant", ["acme"]),
         "globex-admin": ("tenant", ["globex"]), "locked": ("admin", [])}


def hash_password(password: str) -> str:
    """Through the CLI, as an admin makes one."""
    result = subprocess.run([sys.executable, "-m", "bridge", "hash-password", "--stdin"],
                            input=password + "\n", capture_output=True, text=True, timeout=30,
                            cwd=REPO)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def tiny_png(width: int = 160, height: int = 100) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    rows = b"".join(b"\0" + b"".join(bytes((40 + x, 120, 255 - 2 * y)) for x in range(width))
                    for y in range(height))  # a colour gradient, so it looks like a picture
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2,
                                                              0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


class PictureServer:
    """A carrier's media host on loopback: serves one PNG."""

    def __init__(self) -> None:
        body = tiny_png()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/pic/cat.png"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def config(web_port: int, sip_port: int, pbx_port: int, hashes: dict[str, str]) -> str:
    users = "".join(
        f'\n[[console.users]]\nname = "{name}"\nrole = "{ROLES[name][0]}"\n'
        f'password_hash = "{hashes[name]}"\n'
        + (f"accounts = {json.dumps(ROLES[name][1])}\n" if ROLES[name][1] else "")
        for name in PASSWORDS)
    accounts = "".join(f"""
[[accounts]]
name = "{name}"
mode = "trunk"
domain = "127.0.0.1"
pbx_uri = "sip:127.0.0.1:{pbx_port}"
allowed_sources = ["127.0.0.1/32"]
""" for name in ("acme", "globex"))
    return (configs.base(web_port, sip_port) + f'\n[admin]\ntoken = "{ADMIN_TOKEN}"\n'
            + f'\n[media]\nupload_token = "{UPLOAD_TOKEN}"\n' + "\n[console]\n" + users
            + accounts
            + '\n[[providers]]\nname = "sandbox"\ntype = "sandbox"\n'
            + '\n[[providers]]\nname = "relay"\ntype = "sandbox"\n'
            + f'webhook_token = "{RELAY_TOKEN}"\n'
            + configs.twilio_provider("http://127.0.0.1:9")
            + configs.number(ACME_DID, "sandbox", ["1001"], "acme")
            + configs.number(GLOBEX_DID, "sandbox", ["2001"], "globex")
            + configs.number(TWILIO_DID, "twilio", ["1001"], "acme")
            + configs.number(RELAY_DID, "relay", ["2001"], "globex")
            + configs.extension("1001", [ACME_DID], account="acme")
            + configs.extension("1002", [], "deny", account="acme")
            + configs.extension("2001", [GLOBEX_DID], account="globex"))


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def sandbox(bridge: BridgeProcess, payload: dict[str, Any], path: str = "sandbox") -> int:
    return post(f"{bridge.url}/webhooks/{path}", json.dumps(payload).encode(),
                {"Content-Type": "application/json"})[0]


def twilio(bridge: BridgeProcess, sid: str, text: str, token: str = configs.TWILIO_TOKEN
           ) -> int:
    url = f"{bridge.url}/webhooks/twilio"
    params = {"MessageSid": sid, "SmsSid": sid, "AccountSid": configs.TWILIO_SID,
              "From": ACME_REMOTE, "To": TWILIO_DID, "Body": text, "NumMedia": "0"}
    signature = RequestValidator(token).compute_signature(url, params)
    body = urllib.parse.urlencode(params).encode()
    return post(url, body, {"X-Twilio-Signature": signature,
                            "Content-Type": "application/x-www-form-urlencoded"})[0]


def admin_send(bridge: BridgeProcess, extension: str, to: str, text: str) -> dict[str, Any]:
    status, body = post(f"{bridge.url}/admin/send", json.dumps(
        {"from": extension, "to": to, "text": text}).encode(),
        {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"})
    assert status in (202, 422), body
    return json.loads(body)


def message(db: Store, message_id: int) -> StoredMessage:
    row = db.query_sync(lambda conn: conn.execute("SELECT * FROM messages WHERE id = ?",
                                                  (message_id,)).fetchone())
    found = StoredMessage.from_row(row) if row else None
    assert found is not None
    return found


def wait_state(db: Store, message_id: int, *states: str) -> StoredMessage:
    return wait_until(lambda: (m := message(db, message_id)).state in states and m,
                      15, what=f"message {message_id} in {states}")


class Site:
    """The running bridge, its database (read directly: WAL lets a reader in) and what the
    seeding stored."""

    def __init__(self, bridge: BridgeProcess, db: Store, browser: Browser,
                 ids: dict[str, int]) -> None:
        self.bridge, self.db, self.browser, self.ids = bridge, db, browser, ids
        self.root = bridge.url + "/console"

    def message(self, message_id: int) -> StoredMessage:
        return message(self.db, message_id)

    def wait_state(self, message_id: int, *states: str) -> StoredMessage:
        return wait_state(self.db, message_id, *states)

    def count(self, where: str = "1 = 1") -> int:
        return self.db.query_sync(lambda conn: conn.execute(
            f"SELECT COUNT(*) FROM messages WHERE {where}").fetchone()[0])

    def login(self, name: str, password: str | None = None, *, keyboard: bool = False) -> None:
        b = self.browser
        b.driver.delete_all_cookies()
        b.get(self.root + "/login")
        form = b.find("form.login")
        if keyboard:  # the form is usable without a mouse: autofocus, Tab, Enter
            active = b.driver.switch_to.active_element
            assert active.get_attribute("id") == "name"
            active.send_keys(name, Keys.TAB)
            b.driver.switch_to.active_element.send_keys(password or PASSWORDS[name],
                                                        Keys.ENTER)
        else:
            b.find("#name").send_keys(name)
            b.find("#password").send_keys(password or PASSWORDS[name])
            b.find("form.login button").click()
        b.submitted(form)  # read the answer, not the page the form was on
        b.keep()

    def signed_in_as(self, name: str) -> None:
        self.login(name)
        self.browser.until(lambda: self.browser.find("h1").text == "Overview", "the overview")

    def csrf(self) -> str:
        return self.browser.find("input[name=csrf]").get_attribute("value")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    workdir = tmp_path_factory.mktemp("console")
    pictures = PictureServer()
    pbx = Phone("pbx")
    bridge = None
    browser = None
    db = None
    try:
        hashes = {name: hash_password(pw) for name, pw in PASSWORDS.items()}
        web_port = free_port()
        bridge = BridgeProcess(workdir, config(web_port, free_port(), pbx.port, hashes),
                               env=configs.ENV).start(web_port)
        db = Store(workdir / "state" / "bridge.sqlite3")
        db.open_sync()
        ids: dict[str, int] = {}

        # in: four texts, one with a picture; one forged Twilio webhook
        assert sandbox(bridge, {"from": ACME_REMOTE, "to": ACME_DID, "text": "hello acme",
                                "id": "in-1", "media": [pictures.url]}) == 200
        assert sandbox(bridge, {"from": GLOBEX_REMOTE, "to": GLOBEX_DID,
                                "text": "hello globex", "id": "in-2"}) == 200
        assert twilio(bridge, "SM" + "1" * 32, "via twilio") == 200
        assert twilio(bridge, "SM" + "2" * 32, "forged", token="not-the-token") == 403
        assert sandbox(bridge, {"from": GLOBEX_REMOTE, "to": RELAY_DID, "text": "via relay"},
                       f"relay/{RELAY_TOKEN}") == 200
        # out: two that the carrier later reports failed, one refused by policy
        for key, ext, to in (("acme_failed", "1001", ACME_REMOTE),
                             ("globex_failed", "2001", GLOBEX_REMOTE)):
            ids[key] = admin_send(bridge, ext, to, f"out from {key.split('_')[0]}")["id"]
            sent = wait_state(db, ids[key], "sent")
            assert sandbox(bridge, {"id": sent.carrier_id, "status": "failed"}) == 200
        ids["rejected"] = admin_send(bridge, "1002", ACME_REMOTE, "not allowed")["id"]
        for key in ("acme_failed", "globex_failed"):
            wait_state(db, ids[key], "failed")
        # every inbound text and notice reaches the PBX
        wait_until(lambda: db.query_sync(lambda c: c.execute(
            "SELECT COUNT(*) FROM messages WHERE direction = 'in' AND state != 'delivered'"
        ).fetchone()[0]) == 0 and len(pbx.messages) >= 6, 30, what="deliveries")
        ids["hello_globex"] = db.query_sync(lambda c: c.execute(
            "SELECT id FROM messages WHERE body = 'hello globex'").fetchone()[0])
        browser = Browser(workdir / "shots")
        yield Site(bridge, db, browser, ids)
    finally:
        if browser is not None:
            browser.close()
        if db is not None:
            db.close_sync()
        if bridge is not None:
            bridge.stop()
        pbx.close()
        pictures.close()


# --- the tests, in the order an admin would work -------------------------------------------


def test_log_in_with_the_keyboard_and_the_overview_shows_the_known_traffic(site: Site) -> None:
    b = site.browser
    b.driver.set_window_size(1280, 900)
    site.login("ada", keyboard=True)
    b.until(lambda: b.find("h1").text == "Overview", "the overview")
    b.keep()
    assert b.find("#chart-out .total").text == "3"  # 2 failed later, 1 refused
    assert b.find("#chart-in .total").text == "4"  # notices to phones are not texts
    bars = [int(r.get_attribute("data-count")) for r in b.all("#chart-in rect.bar")]
    assert len(bars) == 24 and sum(bars[-2:]) == 4  # all of it in the last hour or two
    failures = b.text("#failures")
    assert "sandbox reports failed 2" in failures
    assert "extension 1002 is not allowed to send SMS 1" in failures
    assert [r.text.split()[-2:] for r in b.all("#queue tbody tr")] == [["0", "-"], ["0", "-"]]
    registrations = b.text("#registrations")
    assert "acme" in registrations and "globex" in registrations and "trunk from" in registrations
    carriers = {row.find_element(By.CSS_SELECTOR, "td").text.split()[0]: row
                for row in b.all("#carriers tbody tr")}
    assert set(carriers) == {"sandbox", "relay", "twilio"}
    twilio_row = carriers["twilio"].text
    assert "ago" in twilio_row and "never" not in twilio_row  # its last valid webhook
    assert re.search(r"\b1 \(last \d+ s ago\)", twilio_row)  # the forged one
    assert "never" in carriers["sandbox"].text or "ago" in carriers["sandbox"].text
    # a signed carrier's URL can be copied; one with a token in it is masked
    assert b.find("#url-twilio").get_attribute("value") == f"{site.bridge.url}/webhooks/twilio"
    assert b.all("button[data-copy='url-twilio']")
    assert b.find("#url-relay").get_attribute("value").endswith(
        "/webhooks/relay/<webhook_token>")
    assert not b.all("button[data-copy='url-relay']")
    assert "sip-sms-bridge webhook-urls" in carriers["relay"].text
    b.shot("overview")
    b.find("button[data-copy='url-twilio']").click()
    b.until(lambda: b.find("button[data-copy='url-twilio']").text == "Copied", "Copied")


def test_search_finds_a_text_and_its_timeline_shows_its_states(site: Site) -> None:
    b = site.browser
    site.signed_in_as("ada")
    b.get(site.root + "/messages")
    b.find("#number").send_keys("9990000")
    b.find("#state").send_keys("delivered")
    b.find("form.search button").click()
    b.until(lambda: "state=delivered" in b.driver.current_url, "the search")
    rows = b.all("table.messages tbody tr")
    assert [r.find_element(By.CSS_SELECTOR, "td.body").text for r in rows] == [
        f"SMS to {GLOBEX_REMOTE} failed: sandbox reports failed",  # the notice to 2001
        "via relay", "hello globex"]
    b.keep()
    b.shot("messages")
    rows[2].find_element(By.CSS_SELECTOR, "td a").click()
    b.until(lambda: b.find("h1").text == f"Message {site.ids['hello_globex']}", "the text")
    timeline = [li.text for li in b.all("#timeline li")]
    states = [s.text for s in b.all("#timeline li .state")]
    assert states[0] == "queued" and states[-1] == "delivered"
    assert "received from sandbox (in-2)" in timeline[0]
    assert "extension 2001 answered 200" in timeline[-1]
    assert b.text("#state") == "delivered" and b.text("#attempts") == "1"
    assert not b.all("#retry")  # a delivered text is not retried
    b.keep()


def test_retry_a_failed_text_and_see_it_change(site: Site) -> None:
    b = site.browser
    site.signed_in_as("ada")
    message_id = site.ids["acme_failed"]
    b.get(f"{site.root}/messages/{message_id}")
    assert b.text("#state") == "failed"
    assert b.text("#last-error") == "sandbox reports failed"
    b.find("#retry").click()
    b.until_text(".flash", f"Message {message_id} is queued again.")
    b.until_text("#state", "sent")  # live: the page was not reloaded for this
    assert site.message(message_id).state == "sent"
    timeline = b.text("#timeline")
    assert "queued again by the operator" in timeline
    assert timeline.index("sandbox reports failed") < timeline.index("queued again")
    assert "accepted by sandbox as sandbox-" in timeline.split("queued again")[1]
    assert not b.all("#retry")
    b.keep()
    b.shot("message")
    assert "console: ada retried message" in site.bridge.log_text()


def test_send_a_test_text_and_see_it_appear_live_in_messages(site: Site) -> None:
    b = site.browser
    site.signed_in_as("ada")
    b.get(site.root + "/messages")
    messages_tab = b.driver.current_window_handle
    b.js("window.notReloaded = true;")
    b.driver.switch_to.new_window("tab")

    def send(extension: str, text: str, flash: str, account: str = "") -> int:
        b.get(site.root + "/send")
        if extension == "1001":
            b.shot("send")
        b.find("#extension").send_keys(extension)
        if account:
            b.find("#account").send_keys(account)
        b.find("#to").send_keys(ACME_REMOTE)
        b.find("#text").send_keys(text)
        b.find("form.send button").click()
        b.until_text(".flash", flash)
        return int(b.find("h1").text.split()[-1])  # the text's own page

    new_id = send("1001", "a test from the console", "Queued as message", "acme")
    assert site.wait_state(new_id, "sent").extension == "1001"
    # the same refusal as the CLI: 1002 may not send
    refused_id = send("1002", "let me out", "Not sent: extension 1002 is not allowed to "
                      "send SMS")
    assert site.message(refused_id).state == "rejected"
    # an account that does not exist: refused, nothing stored
    before = site.count()
    b.get(site.root + "/send")
    status, body = b.fetch(site.root + "/send", "POST", {
        "csrf": site.csrf(), "extension": "1001", "to": ACME_REMOTE, "text": "x",
        "account": "nope"})
    assert status == 422 and "there is no account named &#39;nope&#39;" in body
    assert site.count() == before
    b.driver.close()
    b.driver.switch_to.window(messages_tab)
    b.until(lambda: b.all(f"#m{new_id}"), "the new text in Messages")
    assert "a test from the console" in b.text(f"#m{new_id}")
    assert b.all(f"#m{refused_id}")
    assert b.js("return window.notReloaded === true;")
    log = site.bridge.log_text()
    assert f"console: ada sent a test text as extension 1001 to {ACME_REMOTE}: message " \
           f"{new_id} queued" in log


def test_conversation_is_a_thread_with_states_and_thumbnails(site: Site) -> None:
    b = site.browser
    site.signed_in_as("ada")
    b.get(site.root + "/messages?number=7654321")
    b.find("table.messages a[href*='conversation']").click()
    b.until(lambda: "with our number" in b.find("h1").text, "the conversation")
    assert b.find("h1").text == f"{ACME_REMOTE} with our number {ACME_DID}"
    bubbles = b.all("#thread li")
    texts = [x.find_element(By.CSS_SELECTOR, ".body").text for x in bubbles]
    assert texts[:2] == ["hello acme", "out from acme"]
    assert "theirs" in bubbles[0].get_attribute("class")
    assert "mine" in bubbles[1].get_attribute("class")
    assert "sent" in bubbles[1].text and "delivered" in bubbles[0].text
    thumb = bubbles[0].find_element(By.CSS_SELECTOR, "img.thumb")
    b.until(lambda: b.js("return arguments[0].complete && arguments[0].naturalWidth;", thumb)
            == 160, "the thumbnail to load")
    assert re.search(r"/media/[A-Za-z0-9_-]{22}/cat\.png$", thumb.get_attribute("src"))
    b.keep()
    b.shot("conversation")


def test_configuration_is_read_only_masked_and_checked(site: Site) -> None:
    b = site.browser
    site.signed_in_as("ada")
    b.get(site.root + "/config")
    assert b.text("#problems") == "OK"
    text = b.text("#config")
    assert 'name = "relay"' in text and 'webhook_token = "**********"' in text
    assert 'password_hash = "**********"' in text and 'token = "**********"' in text
    assert not b.all("#config input, #config textarea")
    # the file on disk changes: its problems show, the running bridge carries on
    original = site.bridge.config_path.read_text()
    site.bridge.config_path.write_text(original.replace('name = "relay"', 'name = "Relay!"'))
    try:
        b.get(site.root + "/config")
        assert "providers[Relay!].name" in b.text("#problems")
    finally:
        site.bridge.config_path.write_text(original)
    b.get(site.root + "/config")
    b.shot("config", max_height=1100)


def test_a_tenant_sees_and_retries_nothing_of_another_tenant(site: Site) -> None:
    b = site.browser
    site.signed_in_as("acme-admin")
    b.keep()
    acme_out = site.count("account = 'acme' AND direction = 'out' AND kind = 'text'")
    assert acme_out >= 2 and b.find("#chart-out .total").text == str(acme_out)  # acme's only
    assert b.find("#chart-in .total").text == "2"
    assert not b.all("#carriers")  # the platform's carriers are the operator's business
    assert "globex" not in b.text("#registrations")
    b.get(site.root + "/messages")
    page = b.text()
    assert "hello acme" in page and "globex" not in page and "via relay" not in page
    b.get(f"{site.root}/messages?number={GLOBEX_REMOTE[1:]}")
    assert "No texts match." in b.text()
    # by typing its URL
    other = site.ids["globex_failed"]
    b.get(f"{site.root}/messages/{other}")
    assert b.find("h1").text == "Not found" and "out from globex" not in b.text()
    b.get(f"{site.root}/api/messages/{other}")
    assert json.loads(b.find("body").text) == {"error": "no such message"}
    b.get(f"{site.root}/api/messages?number={GLOBEX_REMOTE[1:]}")
    assert json.loads(b.find("body").text) == {"messages": []}
    b.get(f"{site.root}/conversation?did=%2B{GLOBEX_DID[1:]}&remote=%2B{GLOBEX_REMOTE[1:]}")
    assert "No texts between these numbers." in b.text()
    # a retry of it, with this user's valid CSRF token: as if it did not exist
    b.get(site.root + "/messages")
    status, body = b.fetch(f"{site.root}/messages/{other}/retry", "POST",
                           {"csrf": site.csrf()})
    assert status == 404 and "out from globex" not in body
    assert site.message(other).state == "failed"
    # nor send as another tenant's extension or account
    status, body = b.fetch(site.root + "/send", "POST", {
        "csrf": site.csrf(), "extension": "2001", "to": GLOBEX_REMOTE, "text": "x",
        "account": "globex"})
    assert status == 422 and "globex" in body and "there is no account named" in body
    b.get(site.root + "/config")
    assert "globex" not in b.text("#config") and "relay" not in b.text("#config")
    assert "console: acme-admin tried to retry message" in site.bridge.log_text()
    b.driver.set_window_size(390, 844)  # a phone
    b.get(site.root + "/messages")
    b.shot("messages-phone")
    b.driver.set_window_size(1280, 900)


def test_a_post_without_the_csrf_token_is_refused(site: Site) -> None:
    b = site.browser
    site.signed_in_as("ada")
    target = site.ids["globex_failed"]
    before = site.count()
    for form in ({}, {"csrf": "not-the-token"}):
        status, body = b.fetch(f"{site.root}/messages/{target}/retry", "POST", form)
        assert status == 403 and "came from another site" in body
        status, _ = b.fetch(site.root + "/send", "POST", {
            **form, "extension": "1001", "to": ACME_REMOTE, "text": "forged"})
        assert status == 403
        assert b.fetch(site.root + "/logout", "POST", form)[0] == 403
    assert site.message(target).state == "failed" and site.count() == before
    b.get(site.root + "/")
    assert b.find("h1").text == "Overview"  # still signed in
    # and with no session at all
    status, _ = post(f"{site.root}/messages/{target}/retry", b"csrf=x",
                     {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 403
    assert "missing or wrong CSRF token (ada" in site.bridge.log_text()


def test_wrong_passwords_are_rate_limited(site: Site) -> None:
    b = site.browser
    for _ in range(5):
        site.login("locked", "wrong-password")
        assert b.text("#error") == "Wrong user name or password."
    site.login("locked", "wrong-password")
    assert b.text("#error").startswith("Too many failed sign-ins. Try again in ")
    site.login("locked")  # even the right password, while locked
    assert b.text("#error").startswith("Too many failed sign-ins.")
    status, _ = post(f"{site.root}/login", b"", {})
    assert status == 403  # no CSRF token: refused before any password check
    site.signed_in_as("ada")  # other users from the same address are not locked out
    log = site.bridge.log_text()
    assert "sign-in as 'locked' from 127.0.0.1 refused: too many failed attempts" in log
    assert log.count("sign-in as 'locked' from 127.0.0.1 failed") == 5


def test_logout_ends_the_session(site: Site) -> None:
    b = site.browser
    site.signed_in_as("ada")
    cookie = b.driver.get_cookie("sip_sms_console")
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/console/"

    def overview_with(value: str) -> int:
        request = urllib.request.Request(site.root + "/",
                                         headers={"Cookie": f"sip_sms_console={value}"})
        opener = urllib.request.build_opener(NoRedirect)
        try:
            with opener.open(request, timeout=10) as resp:
                return resp.status
        except urllib.error.HTTPError as exc:
            return exc.code

    assert overview_with(cookie["value"]) == 200
    sign_out = b.find(".who button")
    sign_out.send_keys(Keys.ENTER)
    b.until(lambda: b.find("h1").text == "Sign in", "the sign-in page")
    b.get(site.root + "/messages")
    assert b.find("h1").text == "Sign in" and "/login?next=" in b.driver.current_url
    assert overview_with(cookie["value"]) == 303  # the old cookie is worthless
    assert "console: ada signed out" in site.bridge.log_text()
    b.shot("login")


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any) -> None:
        return None


def test_no_secret_appears_in_any_page_or_response(site: Site) -> None:
    """Every page each kind of user sees, every JSON answer, the headers, and the log."""
    b = site.browser
    bodies: list[str] = []
    paths = ["/", "/messages", "/messages?state=failed", "/send", "/config",
             f"/conversation?did=%2B{ACME_DID[1:]}&remote=%2B{ACME_REMOTE[1:]}",
             "/api/messages", *(f"/messages/{i}" for i in site.ids.values()),
             *(f"/api/messages/{i}" for i in site.ids.values()), "/static/console.js"]
    for user in ("ada", "acme-admin"):
        site.signed_in_as(user)
        cookie = b.driver.get_cookie("sip_sms_console")
        assert cookie is not None
        for path in paths:
            b.get(site.root + path)
            request = urllib.request.Request(site.root + path, headers={
                "Cookie": f"sip_sms_console={cookie['value']}"})
            try:
                with urllib.request.urlopen(request, timeout=10) as resp:
                    bodies.append(str(resp.headers) + resp.read().decode())
            except urllib.error.HTTPError as exc:
                bodies.append(str(exc.headers) + exc.read().decode())
    secrets = [ADMIN_TOKEN, RELAY_TOKEN, UPLOAD_TOKEN, configs.TWILIO_TOKEN,
               *PASSWORDS.values()]
    hashes = re.findall(r'password_hash = "([^"]+)"', site.bridge.config_path.read_text())
    assert len(hashes) == len(PASSWORDS)
    everything = b.pages + bodies
    assert len(everything) > 60
    for secret in [*secrets, *hashes, *(h.split("$")[-1] for h in hashes)]:
        assert not [page for page in everything if secret in page], secret
        assert secret not in site.bridge.log_text()
    assert any("/webhooks/relay/&lt;webhook_token&gt;" in page
               for page in everything)  # masked, not missing


# --- no users: the one-time link, as `make run` prints it ------------------------------------


def test_make_run_prints_a_one_time_login_link_that_opens_the_console(tmp_path: Path) -> None:
    """The example config, run the way `make run` runs it (in a terminal), with only the
    ports and state directory moved so that it runs next to other tests."""
    web_port, sip_port = free_port(), free_port()
    env = {**os.environ, "SIP_SMS_BRIDGE_WEB__PORT": str(web_port),
           "SIP_SMS_BRIDGE_SIP__PORT": str(sip_port),
           "SIP_SMS_BRIDGE_BRIDGE__PUBLIC_URL": f"http://127.0.0.1:{web_port}"}
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge", "run", "--config",
         str(REPO / "config" / "bridge.example.toml")],
        cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=secondary,
        stderr=secondary)
    os.close(secondary)
    output = b""
    browser = None
    try:
        deadline = time.monotonic() + 20
        while b"/console/login/once/" not in output or not output.endswith(b"\n"):
            assert time.monotonic() < deadline, output.decode(errors="replace")
            ready, _, _ = select.select([primary], [], [], 0.5)
            if ready:
                output += os.read(primary, 4096)
        text = output.decode()
        (link,) = re.findall(r"http://127\.0\.0\.1:\d+/console/login/once/\S+", text)
        assert link.startswith(f"http://127.0.0.1:{web_port}/console/login/once/")
        token = link.rsplit("/", 1)[1]
        saved = tmp_path / "state" / "console-login-link"
        assert saved.read_text().strip() == link
        assert stat.S_IMODE(saved.stat().st_mode) == 0o600
        logged = [line for line in text.splitlines() if " INFO " in line]
        assert any("one-time login link for this machine is in state" in line
                   for line in logged)
        assert not any(token in line for line in logged)  # printed, never logged

        browser = Browser(tmp_path / "shots")
        browser.get(link)
        browser.until(lambda: browser.find("h1").text == "Overview", "the overview")
        assert browser.find(".who span").text == "local-admin"
        browser.get(f"http://127.0.0.1:{web_port}/console/config")
        assert 'name = "sandbox"' in browser.text("#config")
        assert not saved.exists()  # used: gone
        browser.driver.delete_all_cookies()
        browser.get(link)  # once only
        assert browser.find("h1").text == "Refused"
        assert "has been used" in browser.text("#error")
        browser.get(f"http://127.0.0.1:{web_port}/console/")
        assert browser.find("h1").text == "Sign in"
        assert "No console users are configured" in browser.text()
    finally:
        if browser is not None:
            browser.close()
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        os.close(primary)
