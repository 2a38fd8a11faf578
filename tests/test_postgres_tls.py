"""PostgreSQL URLs with libpq's TLS parameters (sslmode, sslrootcert, sslcert, sslkey):
what asyncpg is given, and one line, never a traceback, where the server or the files
cannot do what the URL asks. The suite's PostgreSQL speaks no TLS, which the refusals
show."""

from __future__ import annotations

import ssl

import pytest

from storage.engine import tls_argument
from tests.cli import meterflow
from tests.databases import PostgresDatabase

# Any CA bundle will do: the context is only built, not used.
CA = ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt"


def test_a_mode_alone_is_asyncpgs_ssl_argument_and_a_ca_makes_a_verifying_context() -> None:
    """verify-full with a CA checks the certificate and the host name; verify-ca the
    certificate only."""
    assert tls_argument({}) is None
    assert tls_argument({"sslmode": "require"}) == "require"
    full = tls_argument({"sslmode": "verify-full", "sslrootcert": CA})
    assert isinstance(full, ssl.SSLContext)
    assert (full.check_hostname, full.verify_mode) == (True, ssl.CERT_REQUIRED)
    ca_only = tls_argument({"sslmode": "verify-ca", "sslrootcert": CA})
    assert isinstance(ca_only, ssl.SSLContext)
    assert (ca_only.check_hostname, ca_only.verify_mode) == (False, ssl.CERT_REQUIRED)


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("mode", "said"),
    [
        ("require", "rejected SSL upgrade"),
        ("verify-full", "give the server's CA with sslrootcert=FILE in the URL"),
        ("bogus", "sslmode is one of disable, allow, prefer, require, verify-ca, verify-full"),
    ],
)
def test_what_the_url_asks_and_cannot_have_is_one_line(
    postgres: PostgresDatabase, mode: str, said: str
) -> None:
    """A server without TLS, a missing CA, an unknown mode: exit 1 and the reason."""
    done = meterflow("devices", "list", "--db", f"{postgres.dsn}?sslmode={mode}")
    assert done.exit_code == 1
    assert said in done.stderr
    assert "Traceback" not in done.stderr
    plain = meterflow("devices", "list", "--db", f"{postgres.dsn}?sslmode=disable")
    assert plain.exit_code == 0, plain.stderr
