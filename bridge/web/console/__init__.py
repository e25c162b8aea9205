"""The web console: server-rendered pages for PBX admins at ``public_url/console/``.

Libraries, and why:
- **Jinja2** (Pallets) renders the pages: autoescaping on, so a text's body or a carrier's
  error can never become markup; templates ship inside this package (no CDN, no build step).
- **argon2-cffi** hashes console passwords with argon2id (see ``auth``).
- **Sessions need no library**: a random id in an HttpOnly, SameSite=Strict cookie (Secure
  when public_url is https), the session in memory, so logout really ends it (see ``auth``).
- The charts are SVG drawn by the server; the only script (``static/console.js``) refreshes
  live regions by polling the same page, localises times and copies webhook URLs.
"""

from bridge.web.console.routes import Console

__all__ = ["Console"]
