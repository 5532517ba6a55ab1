"""TLS: acceptor with a self-signed certificate generated here, initiator verifying it."""
from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess

import pytest

from crossbook.fix.settings import SessionSettings
from crossbook.fix.transport import Acceptor, Initiator

from crossbook.fix.session import SystemClock

from fix_sessionkit import ORDER, Collect, ExecutingVenue, Peer, until

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command (apt: openssl)")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True, timeout=60)
    return str(cert), str(key)


def test_tls_logon_and_order_round_trip(certificate):
    cert, key = certificate

    async def main():
        venue = ExecutingVenue()
        acceptor = Acceptor([SessionSettings(begin_string="FIX.4.4", sender_comp_id="VENUE", target_comp_id="FIRM1",
                                             tls_cert_file=cert, tls_key_file=key)],
                            venue, host="127.0.0.1", port=0)
        await acceptor.start()
        firm = Collect()
        ini = Initiator(SessionSettings(begin_string="FIX.4.4", sender_comp_id="FIRM1", target_comp_id="VENUE",
                                        connection_type="initiator", socket_connect_host="127.0.0.1",
                                        socket_connect_port=acceptor.port, heart_bt_int=5, reconnect_interval=0.2,
                                        tls_ca_file=cert, tls_verify_peer=True), firm)
        try:
            await ini.start()
            assert await ini.wait_logged_on(10)
            ini.send(None, b"D", ORDER)
            assert await until(lambda: len(firm.messages) == 1)
            assert firm.messages[0][1].msg_type == b"8"
            # A plaintext Logon to the TLS port never logs on: the handshake fails and the socket closes.
            logon = Peer(SystemClock(), sender="FIRM1", target="VENUE").logon()

            def plaintext() -> bytes:
                with socket.create_connection(("127.0.0.1", acceptor.port), timeout=5) as s:
                    s.sendall(logon)
                    try:
                        return s.recv(4096)
                    except (ConnectionError, socket.timeout):
                        return b""
            got = await asyncio.get_running_loop().run_in_executor(None, plaintext)
            assert b"35=A" not in got
        finally:
            await ini.stop()
            await acceptor.stop()

    asyncio.run(main())


def test_initiator_refuses_an_untrusted_certificate(certificate, tmp_path):
    cert, key = certificate
    other = tmp_path / "other.pem"
    other_key = tmp_path / "other.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(other_key), "-out",
                    str(other), "-days", "1", "-subj", "/CN=localhost"], check=True, capture_output=True, timeout=60)

    async def main():
        acceptor = Acceptor([SessionSettings(begin_string="FIX.4.4", sender_comp_id="VENUE", target_comp_id="FIRM1",
                                             tls_cert_file=cert, tls_key_file=key)],
                            Collect(), host="127.0.0.1", port=0)
        await acceptor.start()
        ini = Initiator(SessionSettings(begin_string="FIX.4.4", sender_comp_id="FIRM1", target_comp_id="VENUE",
                                        connection_type="initiator", socket_connect_host="127.0.0.1",
                                        socket_connect_port=acceptor.port, heart_bt_int=5, reconnect_interval=0.2,
                                        tls_ca_file=str(other), tls_verify_peer=True), Collect())
        try:
            await ini.start()
            assert await until(lambda: ini.connect_attempts >= 2, 5)
            assert not ini.is_logged_on()
        finally:
            await ini.stop()
            await acceptor.stop()

    asyncio.run(main())
