"""HTTPS for the local bench (test support code): a throwaway certificate
authority, a TLS-terminating front on 127.0.0.1 in front of
bench/fault_proxy.py, and a certificate directory shaped like the one a
Lambda function finds on Amazon Linux 2023 (provided.al2023).

The guard reaches AWS over HTTPS and trusts it through rustls-native-certs,
which reads SSL_CERT_FILE / SSL_CERT_DIR when set and otherwise the paths
openssl-probe finds; on AL2023 those are the Fedora-style bundle
/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem and the directories
/etc/ssl/certs and /etc/pki/tls/certs (one directory: /etc/ssl/certs links
to the other), which hold a link to that bundle and ca-bundle.trust.crt
("BEGIN TRUSTED CERTIFICATE" blocks, which rustls skips). `Al2023CertDir`
builds that layout in a temporary directory (this machine's CA bundle plus
the throwaway root, so about as many roots as AL2023 ships) and `env`
points the function at it with SSL_CERT_FILE and SSL_CERT_DIR: the same
files, read by the same code, as on Lambda.

The front (`TlsFront`) terminates TLS 1.2/1.3 (HTTP/1.1, keep-alive) with a
server certificate for 127.0.0.1 and localhost issued by an intermediate of
the throwaway root, the leaf and intermediate sent as AWS endpoints send
them, and pipes each connection to the fault proxy, so call counting and
faults work as over plain HTTP. It counts connections, completed handshakes,
handshake failures (with the reason: an untrusted certificate shows up here)
and connections that carried any request bytes.

    python bench/tls_front.py   # prints a front's URL and the cert dir's env, until Ctrl-C
"""

import asyncio
import base64
import datetime
import ipaddress
import os
import re
import shutil
import socket
import ssl
import struct
import tempfile
import threading
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# This machine's CA bundle (Debian/Ubuntu; the Fedora path as a fallback).
SYSTEM_BUNDLES = ["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem"]
BUNDLE = "pki/ca-trust/extracted/pem/tls-ca-bundle.pem"
TRUST_BUNDLE = "pki/ca-trust/extracted/openssl/ca-bundle.trust.crt"


def _name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "connect-slr-guard bench"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


class ThrowawayCa:
    """A root CA and one intermediate, RSA 2048 like AWS's endpoints' chains, made at run time;
    files in a temporary directory removed by close()."""

    def __init__(self, label="bench"):
        self.dir = Path(tempfile.mkdtemp(prefix=f"tls-ca-{label}-"))
        now = datetime.datetime.now(datetime.timezone.utc)
        self.not_before, self.not_after = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=2)
        self.root_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.root = self._ca(_name(f"{label} throwaway root CA"), self.root_key, None, None, path_length=1)
        self.inter_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.inter = self._ca(_name(f"{label} throwaway intermediate CA"), self.inter_key, self.root, self.root_key,
                              path_length=0)
        self.root_pem = _pem(self.root)
        (self.dir / "root.pem").write_bytes(self.root_pem)

    def _ca(self, name, key, issuer, issuer_key, path_length):
        builder = (x509.CertificateBuilder().subject_name(name)
                   .issuer_name(issuer.subject if issuer else name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(self.not_before).not_valid_after(self.not_after)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                                crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
        if issuer:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
        return builder.sign(issuer_key or key, hashes.SHA256())

    def issue_server(self, dns=("localhost",), ips=("127.0.0.1",)):
        """A server certificate for `dns` and `ips`; returns (chain file: leaf + intermediate, key file)."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        sans = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        cert = (x509.CertificateBuilder().subject_name(_name(dns[0] if dns else ips[0])).issuer_name(self.inter.subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(self.not_before).not_valid_after(self.not_after)
                .add_extension(x509.SubjectAlternativeName(sans), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                                             data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                             crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.inter_key.public_key()),
                               critical=False)
                .sign(self.inter_key, hashes.SHA256()))
        chain, key_file = self.dir / "server-chain.pem", self.dir / "server-key.pem"
        chain.write_bytes(_pem(cert) + _pem(self.inter))
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        return chain, key_file

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)


PEM_CERT = re.compile(r"-----BEGIN CERTIFICATE-----\s.*?-----END CERTIFICATE-----", re.S)


def _pem_der(block):
    return base64.b64decode("".join(block.splitlines()[1:-1]))


def _der(tag, content):
    n = len(content)
    length = bytes([n]) if n < 0x80 else (lambda b: bytes([0x80 | len(b)]) + b)(n.to_bytes((n.bit_length() + 7) // 8, "big"))
    return bytes([tag]) + length + content


# X509_CERT_AUX { trust SEQUENCE OF OID (serverAuth) }, as `openssl x509 -addtrust serverAuth` writes it.
SERVER_AUTH_OID = _der(0x06, bytes.fromhex("2b06010505070301"))


def trusted_certificate_block(cert_der, alias):
    """A "BEGIN TRUSTED CERTIFICATE" block (OpenSSL's trusted format, as in AL2023's ca-bundle.trust.crt):
    the certificate followed by its trust settings; rustls' PEM reader skips it."""
    aux = _der(0x30, _der(0x30, SERVER_AUTH_OID) + _der(0x0C, alias.encode()))
    body = base64.encodebytes(cert_der + aux).decode().replace("\n", "")
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return "# " + alias + "\n-----BEGIN TRUSTED CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END TRUSTED CERTIFICATE-----\n"


class Al2023CertDir:
    """<root>/pki/ca-trust/extracted/pem/tls-ca-bundle.pem: this machine's CA bundle plus `extra_roots` (PEM);
    <root>/pki/ca-trust/extracted/openssl/ca-bundle.trust.crt: the same roots as TRUSTED CERTIFICATE blocks;
    <root>/pki/tls/certs/{ca-bundle.crt, ca-bundle.trust.crt}: links to those two;
    <root>/ssl/certs -> ../pki/tls/certs. As on provided.al2023, where they live under /etc."""

    def __init__(self, extra_roots=()):
        system = next((p for p in SYSTEM_BUNDLES if os.path.exists(p)), None)
        if system is None:
            raise RuntimeError(f"no system CA bundle at any of {SYSTEM_BUNDLES}")
        self.root = Path(tempfile.mkdtemp(prefix="al2023-certs-"))
        # PEM blocks as text (not parsed: a few system roots break RFC 5280 in ways `cryptography` warns about).
        blocks = PEM_CERT.findall(Path(system).read_text()) + [b for pem in extra_roots for b in PEM_CERT.findall(pem.decode())]
        self.bundle = self.root / BUNDLE
        self.bundle.parent.mkdir(parents=True)
        self.bundle.write_text("".join(f"{b}\n" for b in blocks))
        self.cert_count = len(blocks)
        trust = self.root / TRUST_BUNDLE
        trust.parent.mkdir(parents=True)
        trust.write_text("".join(trusted_certificate_block(_pem_der(b), f"root {i}") for i, b in enumerate(blocks)))
        tls_certs = self.root / "pki/tls/certs"
        tls_certs.mkdir(parents=True)
        (tls_certs / "ca-bundle.crt").symlink_to("../../ca-trust/extracted/pem/tls-ca-bundle.pem")
        (tls_certs / "ca-bundle.trust.crt").symlink_to("../../ca-trust/extracted/openssl/ca-bundle.trust.crt")
        (self.root / "ssl").mkdir()
        (self.root / "ssl/certs").symlink_to("../pki/tls/certs")

    @property
    def env(self):
        """What openssl-probe finds on AL2023 (the bundle; /etc/ssl/certs and /etc/pki/tls/certs, which
        exist there), given to rustls-native-certs explicitly."""
        return {"SSL_CERT_FILE": str(self.bundle),
                "SSL_CERT_DIR": f"{self.root / 'ssl/certs'}:{self.root / 'pki/tls/certs'}"}

    def close(self):
        shutil.rmtree(self.root, ignore_errors=True)


# The services the guard calls, by the suffix of their AWS_ENDPOINT_URL_<SERVICE> setting.
SERVICES = ["CONNECT", "CUSTOMER_PROFILES", "DYNAMODB", "FIREHOSE", "IAM", "KINESIS", "KMS", "SNS", "SQS", "STS"]


class TlsFront:
    """TLS on 127.0.0.1:<free port>, each connection piped to the plain-HTTP `upstream_url`; with
    `listeners` > 1, as many ports (`urls`), so that a client pools one set of connections per port, as it
    does per AWS service endpoint host."""

    def __init__(self, upstream_url, chain_file, key_file, listeners=1):
        up = urlsplit(upstream_url)
        self.upstream = (up.hostname, up.port)
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.context.load_cert_chain(chain_file, key_file)
        self.context.set_alpn_protocols(["http/1.1"])
        self.lock = threading.Lock()
        self.total_handshakes = 0  # since start, unlike the stats reset_stats() clears
        self.reset_stats()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.servers = [asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._connection, "127.0.0.1", 0), self.loop).result(10) for _ in range(listeners)]
        self.urls = [f"https://127.0.0.1:{srv.sockets[0].getsockname()[1]}" for srv in self.servers]
        self.url = self.urls[0]
        self.port = int(self.url.rsplit(":", 1)[1])

    def service_env(self):
        """AWS_ENDPOINT_URL at the first port, and each of SERVICES at a port of its own (when there are
        enough): one connection pool per service, as against AWS's per-service hosts."""
        env = {"AWS_ENDPOINT_URL": self.url}
        for i, service in enumerate(SERVICES):
            env[f"AWS_ENDPOINT_URL_{service}"] = self.urls[(i + 1) % len(self.urls)]
        return env

    def reset_stats(self):
        with self.lock:
            self.connections = 0
            self.handshakes = 0
            self.handshake_failures = []
            self.connections_with_data = 0
            self.bytes_in = 0
            self.versions = {}

    def stats(self):
        with self.lock:
            return {"connections": self.connections, "handshakes": self.handshakes,
                    "handshake_failures": list(self.handshake_failures),
                    "connections_with_data": self.connections_with_data, "bytes_in": self.bytes_in,
                    "versions": dict(self.versions)}

    async def _connection(self, reader, writer):
        with self.lock:
            self.connections += 1
        try:
            await writer.start_tls(self.context, ssl_handshake_timeout=10)
        except (ssl.SSLError, OSError, asyncio.TimeoutError, EOFError) as err:
            with self.lock:
                self.handshake_failures.append(f"{type(err).__name__}: {err}")
            writer.transport.abort()
            return
        tls = writer.get_extra_info("ssl_object")
        with self.lock:
            self.handshakes += 1
            self.total_handshakes += 1
            key = f"{tls.version()} {tls.cipher()[0]}"
            self.versions[key] = self.versions.get(key, 0) + 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        try:
            await asyncio.gather(self._pipe(reader, up_writer, count=True), self._pipe(up_reader, writer, count=False))
        finally:  # also when close() cancels a connection still open
            writer.transport.abort()
            up_writer.transport.abort()

    async def _pipe(self, reader, writer, count):
        seen = False
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                if count:
                    with self.lock:
                        self.bytes_in += len(data)
                        if not seen:
                            self.connections_with_data += 1
                    seen = True
                writer.write(data)
                await writer.drain()
            writer.close()
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError, OSError):
            # The fault proxy's "reset" mode: pass the RST on to the client.
            sock = writer.get_extra_info("socket")
            if sock is not None:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                except OSError:
                    pass
            writer.transport.abort()

    def close(self):
        async def stop():
            for server in self.servers:
                server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        try:
            asyncio.run_coroutine_threadsafe(stop(), self.loop).result(5)
        except Exception:
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class TlsBench:
    """A throwaway CA, an AL2023-shaped cert dir trusting it, and a TLS front before `proxy_url`;
    `rogue_front()` adds a front whose certificate comes from a CA the directory does not trust."""

    def __init__(self, proxy_url):
        self.proxy_url = proxy_url
        self.ca = ThrowawayCa("trusted")
        self.cert_dir = Al2023CertDir([self.ca.root_pem])
        self.front = TlsFront(proxy_url, *self.ca.issue_server(), listeners=len(SERVICES) + 1)
        self._extra = []

    def rogue_front(self):
        ca = ThrowawayCa("rogue")
        front = TlsFront(self.proxy_url, *ca.issue_server(), listeners=len(SERVICES) + 1)
        self._extra += [front, ca]
        return front

    def sdk_env(self, aws, front=None, connect_front=None):
        """aws.sdk_env over HTTPS, each service at its own port of `front` (default: the trusted one), Connect
        and Customer Profiles at `connect_front`'s if given; plus the AL2023 cert dir."""
        env = {**aws.sdk_env(), **(front or self.front).service_env(), **self.cert_dir.env}
        if connect_front:
            other = connect_front.service_env()
            for key in ("AWS_ENDPOINT_URL_CONNECT", "AWS_ENDPOINT_URL_CUSTOMER_PROFILES"):
                env[key] = other[key]
        return env

    def close(self):
        for item in [self.front, self.cert_dir, self.ca] + self._extra:
            item.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def main():
    import time

    from fault_proxy import FaultProxy
    from local_aws import LocalAws
    aws = LocalAws()
    proxy = FaultProxy(aws.moto_url, aws.double_url)
    with TlsBench(proxy.url) as tls:
        print(f"front: {tls.front.url}  (certificates: {tls.cert_dir.cert_count} in {tls.cert_dir.bundle})")
        for k, v in tls.sdk_env(aws).items():
            print(f"export {k}={v}")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    proxy.close()
    aws.close()


if __name__ == "__main__":
    main()
