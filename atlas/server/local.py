"""A local Neo4j Community server without Docker: jars from Maven, started with plain ``java``.

``install`` runs the pom-only project in ``atlas/maven`` (cached: skipped while the jars are
present and the pom is unchanged). ``start`` writes the Browser bundle with the atlas style and
guide (:mod:`atlas.browser.links`) and ``neo4j.conf``, runs the community entry point bound to
127.0.0.1, waits for Bolt and sets a generated password on first start.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field, replace
from pathlib import Path

from neo4j import GraphDatabase
from neo4j.exceptions import AuthError, ServiceUnavailable

from atlas.browser.links import browser_settings, write_bundle
from atlas.errors import AtlasError, ServerError
from atlas.settings import (
    DEFAULT_USER,
    Neo4jSettings,
    default_credentials_file,
    read_credentials,
    server_dir,
    write_credentials,
)

POM = Path(__file__).resolve().parent / "maven" / "pom.xml"
ENTRY_POINT = "org.neo4j.server.CommunityEntryPoint"
INITIAL_PASSWORD = "neo4j"  # Neo4j's built-in first password, which must be changed
JVM_FLAGS = (
    "-XX:+UseParallelGC",  # less GC CPU than G1 next to the writer on a small, busy machine
    "-XX:-OmitStackTraceInFastThrow",
    "-XX:+UnlockExperimentalVMOptions",
    "-XX:+TrustFinalNonStaticFields",
    "-XX:+DisableExplicitGC",
    "-Djdk.nio.maxCachedBufferSize=1024",
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Djdk.tls.ephemeralDHKeySize=2048",
    "-Djdk.tls.rejectClientInitiatedRenegotiation=true",
    "--add-opens=java.base/java.nio=ALL-UNNAMED",
    "--add-opens=java.base/java.io=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
    "--enable-native-access=ALL-UNNAMED",
    "-Dlog4j2.disable.jmx=true",
    "-Dfile.encoding=UTF-8",
)


@dataclass(frozen=True)
class LocalServer:
    """One local Neo4j instance: shared jars in ``home``, its own conf/data/logs in ``instance``."""

    home: Path = field(default_factory=server_dir)
    instance: Path = field(default_factory=server_dir)
    bolt_port: int = 7687
    http_port: int = 7474
    credentials_file: Path = field(default_factory=default_credentials_file)
    heap: str = "2g"
    pagecache: str = "512m"

    @classmethod
    def configured(cls, bolt_port: int | None = None, http_port: int | None = None) -> LocalServer:
        """The default instance, with the ports of its last start unless others are given."""
        server = cls()
        previous = server.configured_ports()
        return replace(
            server,
            bolt_port=bolt_port or previous.get("bolt", server.bolt_port),
            http_port=http_port or previous.get("http", server.http_port),
        )

    def configured_ports(self) -> dict[str, int]:
        """Ports written to this instance's ``neo4j.conf`` by its last start (if any)."""
        conf = self.instance / "conf" / "neo4j.conf"
        if not conf.exists():
            return {}
        ports = {}
        for line in conf.read_text().splitlines():
            match = re.fullmatch(r"server\.(bolt|http)\.listen_address=.*:(\d+)", line.strip())
            if match:
                ports[match.group(1)] = int(match.group(2))
        return ports

    @property
    def lib(self) -> Path:
        return self.home / "lib"

    @property
    def plugins(self) -> Path:
        return self.home / "plugins"

    @property
    def data(self) -> Path:
        return self.instance / "data"

    @property
    def logs(self) -> Path:
        return self.instance / "logs"

    @property
    def pid_file(self) -> Path:
        return self.instance / "run" / "circuit-atlas-neo4j.pid"

    @property
    def bolt_uri(self) -> str:
        return f"bolt://127.0.0.1:{self.bolt_port}"

    @property
    def browser_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/browser/"

    @property
    def install_stamp(self) -> Path:
        return self.home / ".installed-pom.sha256"

    # ----- install -------------------------------------------------------------------------

    def is_installed(self) -> bool:
        stamp = self.install_stamp
        return stamp.exists() and stamp.read_text().strip() == _pom_digest()

    def install(self, force: bool = False) -> bool:
        """Copy the jars with Maven unless already there for this pom; True if Maven ran."""
        if self.is_installed() and not force:
            return False
        mvn = shutil.which("mvn")
        if mvn is None:
            raise ServerError(
                "Maven (`mvn`) is not on PATH; it is needed once to fetch the Neo4j jars. "
                "Install Maven 3.8+ and Java 17, then run `circuit-atlas server install`."
            )
        for folder in (self.lib, self.plugins):
            shutil.rmtree(folder, ignore_errors=True)
        command = [mvn, "-B", "-q", "-f", str(POM), "package", f"-Dneo4j.home={self.home}"]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ServerError(
                f"Maven could not fetch the Neo4j jars (exit {result.returncode}). "
                f"Command: {' '.join(command)}. Output: {(result.stdout + result.stderr)[-2000:]}"
            )
        self.install_stamp.write_text(_pom_digest() + "\n")
        return True

    def disk_usage(self) -> int:
        """Bytes used by the installed jars (lib and plugins)."""
        return sum(p.stat().st_size for d in (self.lib, self.plugins) for p in d.glob("*.jar"))

    # ----- process -------------------------------------------------------------------------

    def running_pid(self) -> int | None:
        """The server's pid if it runs; a pid file left by a dead process is removed."""
        if not self.pid_file.exists():
            return None
        pid = int(self.pid_file.read_text().strip() or 0)
        if pid > 0 and _is_neo4j_process(pid):
            return pid
        self.pid_file.unlink()
        return None

    def start(self, timeout: float = 180.0) -> Neo4jSettings:
        """Start (or reuse) the server and return settings that reach it with its password."""
        if not self.is_installed():
            self.install()
        stale_pid = self._stale_pid()
        if self.running_pid() is not None:
            return self._ready_settings(time.monotonic() + timeout)
        for port in (self.bolt_port, self.http_port):
            _require_free_port(port, stale_pid)
        write_bundle(self.home)  # the Browser with the atlas style and guide, at /browser/
        self._write_config()
        self.logs.mkdir(parents=True, exist_ok=True)
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        command = [
            _java(),
            f"-Xms{self.heap}",
            f"-Xmx{self.heap}",
            *JVM_FLAGS,
            "-cp",
            f"{self.plugins}/*:{self.lib}/*",
            ENTRY_POINT,
            f"--home-dir={self.home}",
            f"--config-dir={self.instance / 'conf'}",
        ]
        with (self.logs / "console.log").open("ab") as console:
            process = subprocess.Popen(
                command,
                stdout=console,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid_file.write_text(f"{process.pid}\n")
        try:
            return self._ready_settings(time.monotonic() + timeout, process)
        except AtlasError:
            if process.poll() is None:
                self.stop()
            raise

    def stop(self, timeout: float = 60.0) -> int | None:
        """Shut the server down cleanly (SIGTERM, then SIGKILL after timeout); returns its pid."""
        pid = self.running_pid()
        if pid is None:
            return None
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _is_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _is_alive(pid):
            os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return pid

    def version(self) -> str | None:
        """The installed Neo4j version (from the server jar's name)."""
        jars = sorted(self.lib.glob("neo4j-server-*.jar"))
        return jars[0].name.removeprefix("neo4j-server-").removesuffix(".jar") if jars else None

    def status(self) -> dict[str, object]:
        pid = self.running_pid()
        return {
            "installed": self.is_installed(),
            "version": self.version(),
            "running": pid is not None,
            "pid": pid,
            "bolt": self.bolt_uri,
            "browser": self.browser_url,
            "data": str(self.data),
            "logs": str(self.logs),
            "jars": str(self.home),
            "credentials": str(self.credentials_file),
        }

    # ----- helpers -------------------------------------------------------------------------

    def _stale_pid(self) -> int | None:
        """The pid recorded in a pid file whose process is gone (before it is cleaned up)."""
        if not self.pid_file.exists():
            return None
        pid = int(self.pid_file.read_text().strip() or 0)
        return None if _is_neo4j_process(pid) else pid

    def _write_config(self) -> None:
        conf = self.instance / "conf"
        conf.mkdir(parents=True, exist_ok=True)
        settings = {
            "server.directories.data": self.data,
            "server.directories.logs": self.logs,
            "server.directories.plugins": self.plugins,
            "server.directories.import": self.instance / "import",
            "server.directories.run": self.instance / "run",
            "server.default_listen_address": "127.0.0.1",
            "server.default_advertised_address": "127.0.0.1",
            "server.bolt.listen_address": f"127.0.0.1:{self.bolt_port}",
            "server.http.listen_address": f"127.0.0.1:{self.http_port}",
            "server.bolt.advertised_address": f"127.0.0.1:{self.bolt_port}",
            "server.http.advertised_address": f"127.0.0.1:{self.http_port}",
            "server.https.enabled": "false",
            "dbms.security.auth_enabled": "true",
            "dbms.security.procedures.unrestricted": "apoc.*",
            "server.memory.pagecache.size": self.pagecache,
            # rotate the transaction log and checkpoint less often than the defaults
            # (256 MiB, 250 MiB, 15 min) while a run writes (README, Performance)
            "db.tx_log.rotation.size": "1g",
            "db.checkpoint.interval.volume": "1g",
            "db.checkpoint.interval.time": "30m",
            # Keep ~1 GiB of logs after each checkpoint instead of Neo4j's two days (no backups
            # or cluster here): a day of ingesting and deleting runs had left 28 GiB of them.
            "db.tx_log.rotation.retention_policy": "1G size",
            "dbms.usage_report.enabled": "false",
            **browser_settings(self.http_port),
        }
        lines = ["# Generated by `circuit-atlas server start`; edits are overwritten."]
        lines += [f"{key}={value}" for key, value in settings.items()]
        (conf / "neo4j.conf").write_text("\n".join(lines) + "\n")

    def _ready_settings(
        self, deadline: float, process: subprocess.Popen[bytes] | None = None
    ) -> Neo4jSettings:
        """Wait for Bolt, then make sure the stored password works (setting it on first start).

        ``process`` is the server this call started: the wait ends early only if it exited
        (the pid file's check read a starting JVM as gone once, in CI, and removed its pid
        file; the server then ran on without one). Without it, the pid file's process."""
        while not _port_open(self.bolt_port):
            gone = self.running_pid() is None if process is None else process.poll() is not None
            if gone:
                raise ServerError(
                    f"Neo4j exited during start-up; see {self.logs / 'console.log'} and "
                    f"{self.logs / 'neo4j.log'}."
                )
            if time.monotonic() > deadline:
                raise ServerError(
                    f"Neo4j did not open Bolt on port {self.bolt_port} in time; see {self.logs}."
                )
            time.sleep(0.25)
        stored = read_credentials(self.credentials_file)
        if stored is not None and _authenticates(self.bolt_uri, stored.user, stored.password):
            if stored.uri != self.bolt_uri:
                stored = replace(stored, uri=self.bolt_uri)
                write_credentials(self.credentials_file, stored)
            return stored
        if not _authenticates(self.bolt_uri, DEFAULT_USER, INITIAL_PASSWORD):
            raise ServerError(
                f"The local Neo4j rejects the password stored in {self.credentials_file} and "
                "no longer has its initial password. Restore that file, or delete the data "
                f"folder {self.data} (this erases the atlas) and start again."
            )
        settings = Neo4jSettings(
            uri=self.bolt_uri,
            user=DEFAULT_USER,
            password=secrets.token_urlsafe(24),
            source=str(self.credentials_file),
        )
        write_credentials(self.credentials_file, settings)
        with GraphDatabase.driver(self.bolt_uri, auth=(DEFAULT_USER, INITIAL_PASSWORD)) as driver:
            driver.execute_query(
                "ALTER CURRENT USER SET PASSWORD FROM $old TO $new",
                old=INITIAL_PASSWORD,
                new=settings.password,
                database_="system",
            )
        return settings


def _pom_digest() -> str:
    return hashlib.sha256(POM.read_bytes()).hexdigest()


def pom_versions() -> dict[str, str]:
    """The versions pinned in the pom (``neo4j.version``, ``apoc.version``, ...)."""
    namespace = {"m": "http://maven.apache.org/POM/4.0.0"}
    properties = ET.parse(POM).getroot().find("m:properties", namespace)
    assert properties is not None
    return {child.tag.split("}")[1]: child.text or "" for child in properties}


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not java:
        raise ServerError("Java 17 (`java`) is not on PATH; Neo4j 5.26 needs it to run.")
    return java


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")  # a zombie (exited, not yet reaped) counts as gone
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[-1].split()[0] == "Z")


def _is_neo4j_process(pid: int) -> bool:
    """Alive and (where /proc tells) really a Neo4j entry point, not a recycled pid."""
    if not _is_alive(pid):
        return False
    cmdline = Path(f"/proc/{pid}/cmdline")
    return not cmdline.exists() or ENTRY_POINT.encode() in cmdline.read_bytes()


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _require_free_port(port: int, stale_pid: int | None) -> None:
    if not _port_open(port):
        return
    stale = (
        f" A stale pid file (pid {stale_pid}, no longer running) was removed." if stale_pid else ""
    )
    raise ServerError(
        f"Port {port} on 127.0.0.1 is already in use by another process, so Neo4j cannot "
        f"listen there.{stale} Stop that process (another Neo4j? `docker compose down`?) or "
        "choose other ports with `circuit-atlas server start --bolt-port ... --http-port ...`."
    )


def _authenticates(uri: str, user: str, password: str) -> bool:
    try:
        with GraphDatabase.driver(uri, auth=(user, password)) as driver:
            driver.verify_connectivity()
    except AuthError:
        return False
    except ServiceUnavailable as error:
        raise ServerError(f"Neo4j at {uri} stopped answering during start-up: {error}") from error
    return True
