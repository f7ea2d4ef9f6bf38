"""Run the mail test peer in the foreground: dovecot (IMAP + LMTP) and an SMTP front.

Usage:
  python mail_launch.py --dir DIR --imap-port P --lmtp-port P --smtp-port P
                        [--imaps-port P] [--smtps-port P] [--tls] [--smtp-auth-required]
                        USER:PASSWORD [USER:PASSWORD ...]

Run it with the peers venv's python (see mail_server.sh); it needs aiosmtpd and Debian's
dovecot-imapd + dovecot-lmtpd. Everything lives under DIR (created if missing):

  DIR/users             passwd-file (userdb + passdb), one line per USER:PASSWORD
  DIR/mail/USER/Maildir each user's mail (INBOX plus Drafts, Sent, Archive, Junk, Trash)
  DIR/imap/, DIR/lmtp/  the two dovecot instances: dovecot.conf, dovecot.log, run/, state/
  DIR/smtp/N.eml+N.json every message the SMTP front accepted, with its envelope
  DIR/tls/              CA and server certificate (with --tls)

Two dovecot instances run from one template (dovecot.conf.in): "imap" serves IMAP (and
IMAPS), "lmtp" serves LMTP, so IMAP can be stopped and restarted while mail still arrives.
The SMTP front (aiosmtpd) accepts any envelope; each recipient that is a local user (an
optional +detail is allowed) is delivered over LMTP before the reply to DATA, so once the
SMTP client has its 250 the message is in the INBOX. Other recipients are only recorded.
AUTH PLAIN/LOGIN is offered without TLS and accepts any USER:PASSWORD given here; it is
optional unless --smtp-auth-required. With --tls, IMAP and SMTP also offer STARTTLS (never
required), and --imaps-port/--smtps-port add implicit-TLS listeners; the certificate is for
localhost and 127.0.0.1, signed by DIR/tls/ca.pem.

Protocol:
  stdout: exactly one line `READY imap=P lmtp=P smtp=P [imaps=P] [smtps=P]` once every
          listener accepts connections; then one reply line per command (below).
  stderr: logs (dovecot's own logs are in DIR/*/dovecot.log).
  stdin:  one command per line, each answered on stdout with `OK <command>` or
          `ERR <command>: <reason>` once it is done:
            stop S      graceful: clients get `* BYE`, the port refuses connections
            kill S      abrupt (SIGKILL, a crash): clients see the connection drop
            start S     returns once S accepts connections again (same port, same mail)
            restart S   stop + start
            ping
          where S is imap, lmtp or smtp. When stdin is a pipe, a socket or a terminal, its
          end (EOF) stops everything, as SIGTERM does.
  signals: SIGTERM/SIGINT stop everything (exit 0); SIGHUP = `restart imap`,
           SIGUSR1 = `stop imap`, SIGUSR2 = `start imap`; SIGQUIT prints every thread's
           stack to stderr (for a launcher that seems stuck).
  exit:    0 after a requested stop; 2 for bad arguments or a missing dovecot; 3 when a
           server does not come up (e.g. a port in use; the reason is on stderr).

No dovecot process outlives the launcher: each instance runs in its own process group that
is killed on stop, and dovecot's master gets SIGTERM if the launcher itself is killed.

Environment: LG_PEER_HOST (bind address, default 127.0.0.1), LG_DOVECOT (dovecot binary).
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import faulthandler
import grp
import json
import logging
import os
import pwd
import queue
import re
import shutil
import signal
import smtplib
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
HOST = os.environ.get("LG_PEER_HOST", "127.0.0.1")
START_TIMEOUT = 15.0
# Processes that serve clients; a graceful stop waits for them (they send BYE) and then
# kills the rest of the group, skipping the master's fixed one-second wait for its logger.
SESSION_COMMS = {"imap", "imap-login", "lmtp"}
logging.getLogger("mail.log").setLevel(logging.ERROR)  # aiosmtpd's own deprecation chatter


def log(msg: str) -> None:
    print(f"mail_launch: {msg}", file=sys.stderr, flush=True)


class Fail(Exception):
    pass


# ---- process helpers --------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: SIGTERM when the launcher's main thread dies.
    _libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)


def group_members(pgid: int) -> list[tuple[int, str]]:
    """Live (non-zombie) processes in process group `pgid`, as (pid, comm)."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        close = data.rfind(b")")
        fields = data[close + 2 :].split()
        if len(fields) < 3 or fields[0] == b"Z" or int(fields[2]) != pgid:
            continue
        out.append((int(name), data[data.find(b"(") + 1 : close].decode(errors="replace")))
    return out


def listening_inodes(port: int) -> set[int]:
    """Socket inodes listening on TCP `port` (IPv4 and IPv6)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    cols = line.split()
                    if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(int(cols[9]))
        except OSError:
            pass
    return inodes


def owns_listener(pid: int, port: int) -> bool:
    """Whether process `pid` holds the socket listening on `port` (not someone else)."""
    wanted = {f"socket:[{i}]" for i in listening_inodes(port)}
    if not wanted:
        return False
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in wanted:
                    return True
            except OSError:
                pass
    except OSError:
        pass
    return False


def greets(port: int, prefix: bytes) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1.0) as s:
            s.settimeout(2.0)
            line = b""
            while not line.endswith(b"\n") and len(line) < 1024:
                chunk = s.recv(1024)
                if not chunk:
                    break
                line += chunk
            return line.startswith(prefix)
    except OSError:
        return False


def tail(path: str, since: int = 0, limit: int = 4000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(since)
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    return text[-limit:]


# ---- dovecot ----------------------------------------------------------------------------


class Dovecot:
    """One dovecot instance (master in its own process group) rendered from the template."""

    def __init__(self, name: str, root: str, binary: str, values: dict[str, str],
                 ports: list[tuple[int, bytes | None]]):
        self.name = name
        self.dir = os.path.join(root, name)
        self.binary = binary
        self.conf = os.path.join(self.dir, "dovecot.conf")
        self.log_path = os.path.join(self.dir, "dovecot.log")
        self.stderr_path = os.path.join(self.dir, "stderr.log")
        self.ports = ports  # (port, greeting prefix or None for "accepts a connection")
        self.values = dict(values)
        self.values.update(
            INSTANCE_NAME=f"lg-{name}-{ports[0][0]}",
            BASE_DIR=os.path.join(self.dir, "run"),
            STATE_DIR=os.path.join(self.dir, "state"),
            LOG_PATH=self.log_path,
        )
        self.proc: subprocess.Popen | None = None

    def render(self) -> None:
        with open(os.path.join(HERE, "dovecot.conf.in"), encoding="utf-8") as f:
            text = f.read()
        missing = sorted(set(re.findall(r"@([A-Z_]+)@", text)) - set(self.values))
        if missing:
            raise Fail(f"dovecot.conf.in: no value for {missing}")
        text = re.sub(r"@([A-Z_]+)@", lambda m: self.values[m.group(1)], text)
        with open(self.conf, "w", encoding="utf-8") as f:
            f.write(text)

    def spawn(self) -> None:
        if self.proc is not None:
            return
        os.makedirs(self.dir, exist_ok=True)
        # A fresh base_dir and state_dir each time: a stale socket stalls auth for 5 s, and
        # a master killed while it updates state/instances leaves a dotlock that stalls
        # the next start for ~10 s. Neither holds anything the tests need.
        for d in (self.values["BASE_DIR"], self.values["STATE_DIR"]):
            shutil.rmtree(d, ignore_errors=True)
            os.makedirs(d)
        self.render()
        self.log_mark = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        self.err_mark = os.path.getsize(self.stderr_path) if os.path.exists(self.stderr_path) else 0
        with open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(
                [self.binary, "-F", "-c", self.conf],
                stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                start_new_session=True, preexec_fn=_die_with_parent, close_fds=True,
            )

    def wait_ready(self, deadline: float) -> None:
        assert self.proc is not None
        pending = list(self.ports)
        while pending:
            rc = self.proc.poll()
            if rc is not None:
                self.stop(graceful=False)  # whatever the master left in its group
                raise Fail(f"dovecot ({self.name}) exited with status {rc}:\n{self.failure_text()}")
            port, prefix = pending[0]
            if owns_listener(self.proc.pid, port) and (prefix is None or greets(port, prefix)):
                pending.pop(0)
                continue
            if time.monotonic() > deadline:
                self.stop(graceful=False)
                raise Fail(f"dovecot ({self.name}) not serving port {port} in time:\n"
                           f"{self.failure_text()}")
            time.sleep(0.01)

    def failure_text(self) -> str:
        return (tail(self.stderr_path, getattr(self, "err_mark", 0))
                + tail(self.log_path, getattr(self, "log_mark", 0)))

    def start(self) -> None:
        self.spawn()
        self.wait_ready(time.monotonic() + START_TIMEOUT)

    def stop(self, graceful: bool = True) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        pgid = proc.pid
        if graceful and proc.poll() is None:
            # The master closes its listeners at once; the session processes say
            # "* BYE Server shutting down." and exit on their own SIGTERM (the master
            # would only take them down after a fixed one-second pause, without a BYE).
            proc.send_signal(signal.SIGTERM)
            for pid, comm in group_members(pgid):
                if comm in SESSION_COMMS:
                    try:
                        os.kill(pid, signal.SIGTERM)
                    except ProcessLookupError:
                        pass
            deadline = time.monotonic() + 5
            while (proc.poll() is None and time.monotonic() < deadline
                   and any(c in SESSION_COMMS for _, c in group_members(pgid))):
                time.sleep(0.01)
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        deadline = time.monotonic() + 10
        while group_members(pgid):
            if time.monotonic() > deadline:
                log(f"dovecot ({self.name}): processes left in group {pgid}: {group_members(pgid)}")
                break
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                break
            time.sleep(0.01)


# ---- SMTP front -------------------------------------------------------------------------


class Front:
    """aiosmtpd handler: record every message, deliver local recipients over LMTP."""

    def __init__(self, users: dict[str, str], lmtp_port: int, spool: str):
        self.users = users
        self.lmtp_port = lmtp_port
        self.spool = spool
        os.makedirs(spool, exist_ok=True)
        numbers = [int(n.split(".")[0]) for n in os.listdir(spool) if n.endswith(".json")]
        self.seq = max(numbers, default=0)
        self.lock = threading.Lock()

    def local_user(self, address: str) -> str | None:
        local, at, domain = address.rpartition("@")
        if not at:
            return None
        user = f"{local.split('+', 1)[0]}@{domain}".lower()
        return user if user in self.users else None

    # aiosmtpd authenticator(server, session, envelope, mechanism, auth_data)
    def authenticate(self, server, session, envelope, mechanism, auth_data):
        from aiosmtpd.smtp import AuthResult, LoginPassword

        if isinstance(auth_data, LoginPassword):
            login = auth_data.login.decode("utf-8", "replace").lower()
            password = auth_data.password.decode("utf-8", "replace")
            if self.users.get(login) == password:
                return AuthResult(success=True, auth_data=login)
        return AuthResult(success=False, handled=False)

    async def handle_DATA(self, server, session, envelope):
        data = envelope.original_content
        if data is None:
            data = envelope.content if isinstance(envelope.content, bytes) else b""
        # session.ssl is only set by STARTTLS; implicit TLS shows on the transport.
        transport = getattr(server, "transport", None)
        tls = session.ssl is not None or (
            transport is not None and transport.get_extra_info("ssl_object") is not None)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.deliver, session, envelope, data, tls)

    def deliver(self, session, envelope, data: bytes, tls: bool) -> str:
        delivered, failed, not_local = [], [], []
        status = "250 2.0.0 OK: queued"
        for rcpt in envelope.rcpt_tos:
            if self.local_user(rcpt) is None:
                not_local.append(rcpt)
                continue
            try:
                self.lmtp_send(envelope, rcpt, data)
                delivered.append(rcpt)
            except smtplib.SMTPResponseException as e:
                failed.append(f"{rcpt}: {e.smtp_code} {e.smtp_error!r}")
                if e.smtp_code >= 500 and not status.startswith("451"):
                    status = f"550 5.1.1 LMTP delivery to {rcpt} failed: {e.smtp_code}"
                elif e.smtp_code < 500:
                    status = f"451 4.3.0 LMTP delivery to {rcpt} failed: {e.smtp_code}"
            except smtplib.SMTPRecipientsRefused as e:
                code = next(iter(e.recipients.values()))[0]
                failed.append(f"{rcpt}: {code}")
                status = (f"550 5.1.1 LMTP refused {rcpt}" if code >= 500
                          else f"451 4.3.0 LMTP deferred {rcpt}")
            except (OSError, smtplib.SMTPException) as e:
                failed.append(f"{rcpt}: {e!r}")
                status = "451 4.3.0 LMTP unavailable"
        auth = session.auth_data if getattr(session, "authenticated", False) else None
        self.record(envelope, data, {
            "mail_from": "" if envelope.mail_from == "<>" else envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "auth_user": auth if isinstance(auth, str) else None,
            "tls": tls,
            "delivered": delivered,
            "failed": failed,
            "not_local": not_local,
            "reply": status,
        })
        if failed:
            log(f"smtp: delivery failed: {failed}")
        return status

    def lmtp_send(self, envelope, rcpt: str, data: bytes) -> None:
        with smtplib.LMTP(HOST, self.lmtp_port, timeout=30) as lmtp:
            lmtp.ehlo_or_helo_if_needed()
            options = []
            for opt in envelope.mail_options:
                key = opt.split("=", 1)[0].upper()
                if (key == "BODY" and lmtp.has_extn("8bitmime")) or (
                        key == "SMTPUTF8" and lmtp.has_extn("smtputf8")):
                    options.append(opt)
            if envelope.smtp_utf8 and "SMTPUTF8" not in [o.upper() for o in options] \
                    and lmtp.has_extn("smtputf8"):
                options.append("SMTPUTF8")
            sender = "" if envelope.mail_from in (None, "<>") else envelope.mail_from
            lmtp.sendmail(sender, [rcpt], data, mail_options=options)

    def record(self, envelope, data: bytes, meta: dict) -> None:
        with self.lock:
            self.seq += 1
            n = self.seq
        meta["seq"] = n
        base = os.path.join(self.spool, f"{n:06d}")
        with open(base + ".eml", "wb") as f:
            f.write(data)
        with open(base + ".json.tmp", "w", encoding="utf-8") as f:
            json.dump(meta, f)
        os.replace(base + ".json.tmp", base + ".json")  # .json present = record complete


class Smtp:
    def __init__(self, front: Front, port: int, smtps_port: int, tls: ssl.SSLContext | None,
                 auth_required: bool):
        self.front = front
        self.port = port
        self.smtps_port = smtps_port
        self.tls = tls
        self.auth_required = auth_required
        self.controllers: list = []

    def _controller(self, port: int, implicit_tls: bool):
        from aiosmtpd.controller import Controller

        class FailFast(Controller):
            # aiosmtpd 1.4.6 notices a failed bind (port in use) only after ready_timeout.
            def _run(self, ready_event):
                super()._run(ready_event)
                if self._thread_exception is not None:
                    self._factory_invoked.set()
                    ready_event.set()

            def _trigger_server(self):
                if self._thread_exception is None:
                    super()._trigger_server()

        kwargs = dict(
            hostname=HOST, port=port, server_hostname="localhost", ident="loop-gateway-test-smtp",
            authenticator=self.front.authenticate, auth_require_tls=False,
            auth_required=self.auth_required, decode_data=False,
            data_size_limit=64 * 1024 * 1024, ready_timeout=START_TIMEOUT,
        )
        if implicit_tls:
            kwargs["ssl_context"] = self.tls
        elif self.tls is not None:
            kwargs["tls_context"] = self.tls
            kwargs["require_starttls"] = False
        return FailFast(self.front, **kwargs)

    def start(self) -> None:
        if self.controllers:
            return
        wanted = [(self.port, False)] + ([(self.smtps_port, True)] if self.smtps_port else [])
        try:
            for port, implicit in wanted:
                c = self._controller(port, implicit)
                c.start()
                self.controllers.append(c)
        except Exception as e:
            self.stop()
            raise Fail(f"SMTP front on {HOST}:{port} did not start: {e!r}") from e

    def stop(self) -> None:
        for c in self.controllers:
            try:
                c.stop()
            except Exception as e:  # noqa: BLE001 (best effort on shutdown)
                log(f"smtp: stop: {e!r}")
        self.controllers = []


# ---- setup ------------------------------------------------------------------------------


def parse_users(specs: list[str]) -> dict[str, str]:
    users = {}
    for spec in specs:
        user, sep, password = spec.partition(":")
        user = user.strip().lower()
        if not sep or not user or not re.fullmatch(r"[^\s:/\\]+", user) or \
                any(c in password for c in ":\r\n"):
            raise Fail(f"bad user spec {spec!r}: want USER:PASSWORD (no ':' or newline "
                       "in the password, no whitespace, ':' or '/' in the user)")
        users[user] = password
    if not users:
        raise Fail("give at least one USER:PASSWORD")
    return users


def identities() -> dict[str, object]:
    """Who dovecot's processes run as, and who owns the mail."""
    if os.geteuid() != 0:
        me = pwd.getpwuid(os.geteuid())
        group = grp.getgrgid(os.getegid()).gr_name
        return dict(login=me.pw_name, internal=me.pw_name, internal_group=group,
                    uid=me.pw_uid, gid=os.getegid())

    def user(name: str, fallback: str) -> pwd.struct_passwd:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            return pwd.getpwnam(fallback)

    # Root: login processes must not run as root, nor may mail (passwd-file rejects UID 0).
    login = user("dovenull", "nobody")
    internal = user("dovecot", "nobody")
    mail = pwd.getpwnam("nobody")
    return dict(login=login.pw_name, internal=internal.pw_name,
                internal_group=grp.getgrgid(internal.pw_gid).gr_name,
                uid=mail.pw_uid, gid=mail.pw_gid)


def make_tls(dirpath: str) -> tuple[str, str, str]:
    """A CA and a localhost/127.0.0.1 server certificate (EC P-256), reused when present."""
    tls = os.path.join(dirpath, "tls")
    ca, cert, key = (os.path.join(tls, n) for n in ("ca.pem", "cert.pem", "key.pem"))
    if all(os.path.exists(p) for p in (ca, cert, key)):
        return ca, cert, key
    openssl = shutil.which("openssl")
    if openssl is None:
        raise Fail("--tls needs openssl (apt-get install -y openssl)")
    os.makedirs(tls, exist_ok=True)
    cnf = os.path.join(tls, "openssl.cnf")
    sans = ["DNS:localhost", "IP:127.0.0.1"]
    if HOST not in ("127.0.0.1", "localhost", "0.0.0.0", "::"):
        sans.append(("IP:" if re.fullmatch(r"[0-9.:]+", HOST) else "DNS:") + HOST)
    with open(cnf, "w", encoding="utf-8") as f:
        f.write(
            "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = localhost\n"
            "[ca_ext]\nbasicConstraints = critical,CA:TRUE\n"
            "keyUsage = critical,keyCertSign,cRLSign\nsubjectKeyIdentifier = hash\n"
            "[leaf_ext]\nbasicConstraints = critical,CA:FALSE\n"
            "keyUsage = critical,digitalSignature\nextendedKeyUsage = serverAuth\n"
            f"subjectAltName = {','.join(sans)}\n"
            "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n"
        )
    env = dict(os.environ, OPENSSL_CONF=cnf)  # never the system openssl.cnf
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]

    def run(*args: str) -> None:
        r = subprocess.run([openssl, *args], env=env, capture_output=True, text=True)
        if r.returncode != 0:
            raise Fail(f"openssl {args[0]} failed: {r.stderr.strip()}")

    ca_key, csr = os.path.join(tls, "ca.key"), os.path.join(tls, "cert.csr")
    run("req", "-x509", "-config", cnf, "-extensions", "ca_ext", *ec, "-keyout", ca_key,
        "-out", ca + ".tmp", "-days", "3650", "-subj", "/CN=Loop Gateway test CA")
    run("req", "-new", "-config", cnf, *ec, "-keyout", key + ".tmp", "-out", csr,
        "-subj", "/CN=localhost")
    run("x509", "-req", "-in", csr, "-CA", ca + ".tmp", "-CAkey", ca_key,
        "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-days", "3650",
        "-extfile", cnf, "-extensions", "leaf_ext", "-out", cert + ".tmp")
    for p in (key, ca, cert):  # cert.pem last: its presence means the set is complete
        os.replace(p + ".tmp", p)
    os.chmod(key, 0o600)
    return ca, cert, key


def setup(args) -> tuple[Dovecot, Dovecot, Smtp]:
    binary = os.environ.get("LG_DOVECOT") or shutil.which(
        "dovecot", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if not binary:
        raise Fail("dovecot not found: apt-get install -y dovecot-imapd dovecot-lmtpd")
    users = parse_users(args.users)
    ids = identities()
    root = os.path.abspath(args.dir)
    os.makedirs(root, exist_ok=True)
    if os.geteuid() == 0:
        # Mail is owned by nobody and auth runs as dovecot: both must get through DIR.
        os.chmod(root, stat.S_IMODE(os.stat(root).st_mode) | 0o711)
    mail = os.path.join(root, "mail")
    os.makedirs(mail, exist_ok=True)
    os.chmod(mail, 0o755)
    for user in users:
        home = os.path.join(mail, user)
        os.makedirs(home, exist_ok=True)
        if os.geteuid() == 0:
            for d, _, files in os.walk(home):
                os.chown(d, ids["uid"], ids["gid"])
                for name in files:
                    os.chown(os.path.join(d, name), ids["uid"], ids["gid"])
    users_file = os.path.join(root, "users")
    with open(users_file + ".tmp", "w", encoding="utf-8") as f:
        for user, password in users.items():
            f.write(f"{user}:{{PLAIN}}{password}:{ids['uid']}:{ids['gid']}::"
                    f"{os.path.join(mail, user)}::\n")
    os.chmod(users_file + ".tmp", 0o644)
    os.replace(users_file + ".tmp", users_file)

    context = None
    if args.tls:
        ca, cert, key = make_tls(root)
        ssl_settings = (f"ssl = yes\nssl_cert = <{cert}\nssl_key = <{key}\n"
                        "ssl_min_protocol = TLSv1.2\nssl_prefer_server_ciphers = yes")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
    else:
        if args.imaps_port or args.smtps_port:
            raise Fail("--imaps-port/--smtps-port need --tls")
        ssl_settings = "ssl = no"
    values = dict(
        HOST=HOST, USERS_FILE=users_file, SSL_SETTINGS=ssl_settings,
        LOGIN_USER=ids["login"], INTERNAL_USER=ids["internal"],
        INTERNAL_GROUP=ids["internal_group"],
        IMAP_PORT=str(args.imap_port), IMAPS_PORT=str(args.imaps_port or 0),
        LMTP_PORT=str(args.lmtp_port),
        LOGIN_CHROOT="login" if os.geteuid() == 0 else "",
        ANVIL_CHROOT="empty" if os.geteuid() == 0 else "",
    )
    imap_ports: list[tuple[int, bytes | None]] = [(args.imap_port, b"* OK")]
    if args.imaps_port:
        imap_ports.append((args.imaps_port, None))
    imap = Dovecot("imap", root, binary, dict(values, PROTOCOLS="imap"), imap_ports)
    lmtp = Dovecot("lmtp", root, binary, dict(values, PROTOCOLS="lmtp"),
                   [(args.lmtp_port, b"220")])
    front = Front(users, args.lmtp_port, os.path.join(root, "smtp"))
    smtp = Smtp(front, args.smtp_port, args.smtps_port or 0, context, args.smtp_auth_required)
    return imap, lmtp, smtp


# ---- main -------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", required=True)
    parser.add_argument("--imap-port", type=int, required=True)
    parser.add_argument("--lmtp-port", type=int, required=True)
    parser.add_argument("--smtp-port", type=int, required=True)
    parser.add_argument("--imaps-port", type=int, default=0)
    parser.add_argument("--smtps-port", type=int, default=0)
    parser.add_argument("--tls", action="store_true")
    parser.add_argument("--smtp-auth-required", action="store_true")
    parser.add_argument("users", nargs="+", metavar="USER:PASSWORD")
    args = parser.parse_args()

    try:
        imap, lmtp, smtp = setup(args)
    except Fail as e:
        log(str(e))
        return 2
    services = {"imap": imap, "lmtp": lmtp, "smtp": smtp}

    faulthandler.register(signal.SIGQUIT, all_threads=True)  # SIGQUIT: stacks to stderr
    commands: queue.SimpleQueue = queue.SimpleQueue()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: commands.put("quit"))
    signal.signal(signal.SIGHUP, lambda *_: commands.put("restart imap"))
    signal.signal(signal.SIGUSR1, lambda *_: commands.put("stop imap"))
    signal.signal(signal.SIGUSR2, lambda *_: commands.put("start imap"))

    try:
        try:
            imap.spawn()
            lmtp.spawn()
            smtp.start()
            deadline = time.monotonic() + START_TIMEOUT
            imap.wait_ready(deadline)
            lmtp.wait_ready(deadline)
        except Fail as e:
            log(str(e))
            return 3
        with open(os.path.join(args.dir, "launcher.pid"), "w") as f:
            f.write(f"{os.getpid()}\n")
        ready = f"READY imap={args.imap_port} lmtp={args.lmtp_port} smtp={args.smtp_port}"
        if args.imaps_port:
            ready += f" imaps={args.imaps_port}"
        if args.smtps_port:
            ready += f" smtps={args.smtps_port}"
        print(ready, flush=True)

        mode = os.fstat(0).st_mode
        quit_on_eof = stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(0)

        def read_stdin() -> None:
            # os.read, not sys.stdin: a daemon thread blocked inside sys.stdin's buffer
            # lock stalls interpreter shutdown.
            pending = b""
            while True:
                try:
                    chunk = os.read(0, 4096)
                except OSError:
                    chunk = b""
                if not chunk:
                    break
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for raw in lines:
                    line = raw.decode(errors="replace").strip()
                    if line:
                        commands.put(line)
            if quit_on_eof:
                commands.put("quit")

        threading.Thread(target=read_stdin, daemon=True).start()

        while True:
            command = commands.get()
            if command == "quit":
                return 0
            print(run_command(command, services), flush=True)
    finally:
        smtp.stop()
        imap.stop()
        lmtp.stop()


def run_command(command: str, services: dict) -> str:
    words = command.split()
    try:
        if words == ["ping"]:
            return "OK ping"
        if len(words) != 2 or words[0] not in ("stop", "kill", "start", "restart") \
                or words[1] not in services:
            raise Fail("unknown command (stop|kill|start|restart imap|lmtp|smtp, or ping)")
        verb, server = words[0], services[words[1]]
        if verb in ("stop", "restart", "kill"):
            if isinstance(server, Dovecot):
                server.stop(graceful=verb != "kill")
            else:
                server.stop()
        if verb in ("start", "restart"):
            server.start()
        return f"OK {command}"
    except Fail as e:
        log(str(e))
        return f"ERR {command}: {str(e).splitlines()[0]}"


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # everything is stopped by now; don't wait for daemon threads
