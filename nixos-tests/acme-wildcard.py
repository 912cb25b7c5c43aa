# Runbook of acme-wildcard.nix: one certificate covers every user's address.
# PLAN (the server's plan, from the module) is defined above this script by the .nix.
import re

DOMAIN = PLAN["domain"]
CERT_DIR = f"/var/lib/acme/{PLAN['acme']['certName']}"
USERS = sorted(PLAN["users"].values(), key=lambda u: u["name"])
ROOT = "/tmp/pebble-root.pem"  # the ACME server's issuing root, fetched by the client
title = re.search(r"<title>(.*?)</title>", PLAN["nginx"]["defaultServer"]["landingHtml"])
assert title, "the plan's landing page has a <title>"
LANDING_TITLE = title.group(1)

dnsserver.start()
acme.start()
dnsserver.wait_for_unit("pebble-challtestsrv.service")
dnsserver.wait_for_open_port(53)
acme.wait_for_unit("pebble.service")
acme.wait_for_open_port(443)

server.start()
client.start()

with subtest("the server gets one certificate for the domain and every subdomain, by DNS-01"):
    server.wait_until_succeeds(
        f"openssl x509 -noout -issuer -in {CERT_DIR}/cert.pem | grep -i pebble", timeout=600)
    for name in [DOMAIN] + [u["hostname"] for u in USERS] + [f"anyone-else.{DOMAIN}"]:
        server.succeed(f"openssl x509 -noout -checkhost {name} -in {CERT_DIR}/cert.pem | grep 'does match'")
    # A wildcard covers one label, no more.
    server.succeed(f"openssl x509 -noout -checkhost too.deep.{DOMAIN} -in {CERT_DIR}/cert.pem | grep 'does NOT match'")

with subtest("the key is readable by the acme user and nginx only"):
    server.succeed(f"test \"$(stat -c '%a %G' {CERT_DIR}/key.pem)\" = '640 nginx'")

for user in USERS:
    server.wait_for_unit(user["container"]["unit"])
client.wait_for_unit("multi-user.target")
client.wait_until_succeeds(f"curl -fsS https://acme.test:15000/roots/0 > {ROOT}")

for user in USERS:
    host = user["hostname"]
    with subtest(f"{host} serves the certificate, valid for its name"):
        # nginx starts on a self-signed placeholder and reloads once the real one is in.
        client.wait_until_succeeds(
            f"openssl s_client -brief -CAfile {ROOT} -verify_return_error -verify_hostname {host}"
            f" -servername {host} -connect {host}:443 < /dev/null", timeout=300)

    with subtest(f"{host}: plain HTTP moves to HTTPS, and HTTPS asks browsers to stay"):
        redirect = client.succeed(f"curl -sS -o /dev/null -w '%{{http_code}} %{{redirect_url}}' http://{host}/")
        assert redirect == f"301 https://{host}/", f"http://{host}/ answered {redirect!r}"
        headers = client.succeed(f"curl -fsS --cacert {ROOT} -D - -o /dev/null https://{host}/healthz").lower()
        assert "strict-transport-security: max-age=31536000" in headers, headers

    with subtest(f"{host}: code-server answers behind the certificate"):
        health = json.loads(client.succeed(f"curl -fsS --cacert {ROOT} https://{host}/healthz"))
        assert health["status"] in ("alive", "expired"), health

with subtest("an unknown subdomain gets the landing page (404) under the same certificate"):
    status = client.succeed(
        f"curl -sS --cacert {ROOT} -o /tmp/landing.html -w '%{{http_code}}' https://nobody.{DOMAIN}/")
    assert status == "404", f"https://nobody.{DOMAIN}/ answered {status}"
    client.succeed(f"grep -F '{LANDING_TITLE}' /tmp/landing.html")
