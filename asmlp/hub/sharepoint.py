"""OneDrive-for-Business (SharePoint) share links: the URLs that answer with the file itself.

A share link ``https://<host>/:u:/g/personal/<user>/<token>?e=<x>`` opens a viewer page in a browser. Without
one, two forms give the file, as public downloaders use them (https://github.com/loribonna/onedrivedownloader,
https://github.com/hwfan/DriveDownloader ``DriveDownloader/netdrives/sharepoint.py``,
https://github.com/axzxc1236/pySharepointDownloader/issues/2):

1. the link with its query replaced by ``download=1``: an anonymous link answers 302, sets a ``FedAuth`` cookie
   and redirects to the file under ``/personal/<user>/...``, which is refused without that cookie (so the client
   keeps cookies across the redirect: :func:`asmlp.hub.fetch.download` does);
2. ``https://<host>/personal/<user>/_layouts/15/download.aspx?share=<token>``.

A tenant that no longer allows anonymous links answers 200 with an HTML sign-in page; a closed account answers
403 or 404. The consumer ``api.onedrive.com/v1.0/shares/u!...`` route needs OAuth for business links: not used.
"""
from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

__all__ = ['is_share_link', 'download_urls']

_KIND_SEGMENT = re.compile(r':[a-z]:')  # /:u:/ (file), /:f:/ (folder), /:b:/ ... in share links


def is_share_link(url: str) -> bool:
    """True for ``https://<host>/:u:/g/personal/<user>/<token>`` style links (any host, any scheme)."""
    parts = [p for p in urlsplit(url).path.split('/') if p]
    return len(parts) >= 4 and bool(_KIND_SEGMENT.fullmatch(parts[0])) and 'personal' in parts


def download_urls(link: str) -> list[str]:
    """The forms to try for ``link``, best first: ``?download=1``, then ``download.aspx?share=<token>``.

    A URL that is not a share link is returned alone, unchanged (one download path for URLs and share links).
    """
    if not is_share_link(link):
        return [link]
    scheme, host, path, _, _ = urlsplit(link)
    parts = [p for p in path.split('/') if p]
    at = parts.index('personal')
    user, token = parts[at + 1], parts[-1]
    direct = urlunsplit((scheme, host, path, 'download=1', ''))
    aspx = urlunsplit((scheme, host, f'/personal/{user}/_layouts/15/download.aspx', f'share={token}', ''))
    return [direct, aspx]
