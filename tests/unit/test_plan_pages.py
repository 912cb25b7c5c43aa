"""Every page a person sees comes from modules/code-server-multi/pages/: one template
(page.html) around a body file per page, and no markup written inline in the Nix files."""

from __future__ import annotations

import re
from pathlib import Path

from csm import plan as planlib

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "modules/code-server-multi"
PAGES = MODULE / "pages"
MARKUP = re.compile(r"<\s*(!doctype|html|head|body|title|style|script|meta|h1|p|form|input|button|noscript)\b", re.I)


def every_page(plan: dict) -> dict[str, str]:
    pages = {f"users.{n}.pages.{k}": html for n, u in plan.users.items() for k, html in u.pages.items()}
    pages["nginx.defaultServer.landingHtml"] = plan.nginx["defaultServer"]["landingHtml"]
    for n, u in plan.users.items():
        (limited,) = [line for line in u.nginx["locations"]["@csm_rate_limited"]["config"] if "return 429" in line]
        pages[f"users.{n}: nginx's 429 page"] = re.fullmatch(r'return 429 "(.*)";', limited).group(1)
    return pages


def test_no_markup_is_written_inline_in_the_nix_files():
    inline = [
        f"{p.relative_to(ROOT)}:{i}: {line.strip()}"
        for p in sorted(MODULE.rglob("*.nix"))
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if MARKUP.search(line)
    ]
    assert not inline, "HTML belongs in modules/code-server-multi/pages/, read through the template:\n" + "\n".join(
        inline
    )


def test_every_page_is_the_one_template_around_a_body_file():
    template = (PAGES / "page.html").read_text().replace("\n", "")
    head, rest = template.split("@TITLE@", 1)
    tail = rest.split("@BODY@", 1)[1]
    plan = planlib.load(ROOT / "examples/team.nix")
    pages = every_page(plan)
    assert len(pages) == 5 * len(plan.users) + 1 + len(plan.users)
    for where, html in pages.items():
        flat = html.replace("\n", "")
        assert flat.startswith(head) and flat.endswith(tail), f"{where} is not made from pages/page.html"
    # The bodies are fragments: the template alone makes a document.
    for body in sorted(PAGES.glob("*.html")):
        if body.name != "page.html":
            assert not re.search(r"<\s*(!doctype|html|head|body)\b", body.read_text(), re.I), body.name


def test_the_landing_page_says_what_the_settings_say_escaped():
    plan = planlib.from_settings(
        {
            "domain": "code.test",
            "users": {"ada": {"passwordFile": "/s/a"}},
            "landingPage": {"title": "Nobody <here>", "message": 'Ask "Dan" & co'},
        }
    )
    html = plan.nginx["defaultServer"]["landingHtml"]
    assert html.count("Nobody &lt;here&gt;") == 2  # <title> and <h1>
    assert "<p>Ask &quot;Dan&quot; &amp; co</p>" in html
