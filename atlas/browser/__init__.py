"""The Neo4j Browser as a way into the atlas: a style (GraSS), a guide and deep links.

:func:`write_bundle` writes the style and guide where the local server serves them;
:func:`browser_url` builds a link that opens the Browser on a template's query.
"""

from atlas.browser.links import BrowserLink, browser_url, write_bundle

__all__ = ["BrowserLink", "browser_url", "write_bundle"]
