# Every page a person sees: one template (pages/page.html) and a body per page
# (pages/<name>.html), each read from its file. The @...@ fields filled here are
# fixed by the plan; those that depend on the request (@ERROR@, @NEXT@) the gate
# fills, escaped.
{ lib, cfg, gate }:
let
  inherit (builtins) readFile replaceStrings;
  inherit (lib) escapeHtml;
  inherit (gate) paths;
  page = title: body: replaceStrings [ "@TITLE@" "@BODY@" ] [ title body ] (readFile ../pages/page.html);
  body = file: fields: replaceStrings (builtins.attrNames fields) (builtins.attrValues fields) (readFile (../pages + "/${file}"));
in
{
  # The gate's pages for one user.
  gate = name: let who = escapeHtml name; in {
    login = page "Log in to ${who}&#8217;s workspace" (body "login.html" { "@WHO@" = who; "@LOGIN_PATH@" = paths.login; });
    logout = page "Log out" (body "logout.html" { "@WHO@" = who; "@LOGOUT_PATH@" = paths.logout; });
    starting = page "Starting ${who}&#8217;s workspace&#8230;" (body "starting.html" {
      "@RETRY_AFTER@" = toString gate.plan.retryAfterSeconds;
      "@HOLD_MS@" = toString (gate.plan.readyHoldSeconds * 2000);
      "@READY_PATH@" = paths.ready;
    });
    failed = page "${who}&#8217;s workspace could not start" (body "failed.html" { });
    stopped = page "${who}&#8217;s workspace is not running" (body "stopped.html" { });
  };
  # Served by nginx itself, so in a quoted string: the pages hold no double quote or $.
  rateLimited = replaceStrings [ "\n" ] [ "" ] (page "Too many login attempts" (body "rate-limited.html" { }));
  # What unknown subdomains and Host headers get, with 404.
  landing = page (escapeHtml cfg.landingPage.title) (body "landing.html" { "@MESSAGE@" = escapeHtml cfg.landingPage.message; });
}
