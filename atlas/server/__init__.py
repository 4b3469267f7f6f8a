"""A local Neo4j Community 5.26 server without Docker.

:class:`LocalServer` installs the server and Browser jars from Maven Central through a pom-only
project (``atlas/server/maven/pom.xml``), writes ``neo4j.conf`` (loopback only), starts
``org.neo4j.server.CommunityEntryPoint`` with plain ``java`` and stores the generated password.
"""

from atlas.server.local import LocalServer

__all__ = ["LocalServer"]
