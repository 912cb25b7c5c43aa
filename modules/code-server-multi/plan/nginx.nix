# nginx in front of everything: a server per user whose every request asks the gate
# first, and the http-level zones, maps and upstream they share.
{ cfg, gate, pages }:
let
  inherit (builtins) foldl' length stringLength;
  inherit (cfg) s names;
  inherit (gate) paths;

  limits = {
    clientMaxBodySize = "128m";  # VS Code uploads of 100 MB, with room for encoding
    webSocketTimeout = "3600s";  # a quiet terminal's WebSocket stays open an hour; nothing else waits that long
    # A coarse flood guard on password submissions (POST to the gate's login path)
    # per client address; loading the login page is never counted. A class behind
    # one router (one address) logs in at once: 30 at a time, then one every 2 s.
    # Wrong passwords are held to a few a minute per address by the gate.
    loginRate = "30r/m";
    loginBurst = 30;
    connectionsPerAddress = 256;   # a class of 30 behind one address, each with a few tabs
    wallRate = "10r/s";          # login pages shown in place of a page, per address
    wallBurst = 60;              # a class of 30 opening their addresses at once
  };

  proxyHeaders = [
    "proxy_http_version 1.1;"
    "proxy_set_header Host $host;"
    # code-server compares Origin with X-Forwarded-Host: $http_host keeps the
    # port the browser used, so WebSockets work on any port.
    "proxy_set_header X-Forwarded-Host $http_host;"
    "proxy_set_header X-Forwarded-Proto $scheme;"
    "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;"
    "proxy_set_header X-Real-IP $remote_addr;"
    # code-server trusts Forwarded over X-Forwarded-Host: never pass a client's.
    "proxy_set_header Forwarded \"\";"
    "proxy_set_header Upgrade $http_upgrade;"
    "proxy_set_header Connection $csm_connection_upgrade;"
  ];
  # What nginx sends the gate: which user's host this is (fixed per server, never
  # the client's), the client's address and scheme, and the address asked for.
  gateHeaders = name: [
    "proxy_http_version 1.1;"
    "proxy_set_header Connection \"\";"   # keep-alive to the gate
    "proxy_set_header Host $host;"
    "proxy_set_header ${gate.plan.userHeader} ${name};"
    "proxy_set_header X-Real-IP $remote_addr;"
    "proxy_set_header X-Forwarded-Proto $scheme;"
    "proxy_set_header X-Original-URI $request_uri;"
  ];
  # The gate decides from the headers alone; an upload meant for code-server stays out.
  noBody = [ "proxy_pass_request_body off;" "proxy_set_header Content-Length \"\";" ];
  gateBodyLimit = "client_max_body_size 16k;";   # a login form: nginx never holds a big body for the gate
  toGate = name: extra: { proxyPass = "http://csm_gate"; config = extra ++ gateHeaders name; };
  # Every request to code-server first passes the gate (auth_request): no session,
  # the login page in its place (401); the socket refusing (a stopped container),
  # the gate's wake; a WebSocket upgrade, the only request allowed to stay open an hour.
  behindGate = [
    "auth_request ${paths.auth};"
    "error_page 401 = @csm_login;"
    "error_page 502 = @csm_wake;"
    # No session cookie at all: the login page at once, without asking the gate twice.
    "if ($csm_has_session = 0) { return 401; }"
  ];
  # The sum each host name needs in nginx's server name hash (ngx_hash_init: a
  # pointer, the name and 2 bytes aligned to 8, and the bucket's end pointer).
  hostNameNeed = n: 16 + 8 * ((stringLength n + 2 + 7) / 8);
  longestNeed = foldl' (a: n: let x = hostNameNeed n; in if x > a then x else a) 0
    ([ "*.${s.domain}" ] ++ map (n: "${n}.${s.domain}") names);
  workerConnections = 1024 + 2 * limits.connectionsPerAddress * length names;
  bucketSize = foldl' (a: b: if a >= longestNeed then a else b) 64 [ 128 256 512 ];
in
{
  # plan.users.<name>.nginx: the user's server, proxying to their code-server's socket.
  forUser = name:
    let codeServer = "http://unix:${gate.socketOf name}:"; in {
      serverName = "${name}.${s.domain}";
      config = [
        "client_max_body_size ${limits.clientMaxBodySize};"
        "limit_conn csm_conn ${toString limits.connectionsPerAddress};"
        "absolute_redirect off;"
      ];
      locations = {
        "/" = {
          proxyPass = codeServer;
          # Only upgrades go on to @csm_websocket, which may stay open an hour.
          config = behindGate ++ [ "error_page 418 = @csm_websocket;" "if ($http_upgrade) { return 418; }" ] ++ proxyHeaders;
        };
        "@csm_websocket" = {
          proxyPass = codeServer;
          config = behindGate ++ proxyHeaders ++ [
            "proxy_read_timeout ${limits.webSocketTimeout};"
            "proxy_send_timeout ${limits.webSocketTimeout};"
          ];
        };
        # The gate's own pages and questions; it answers 404 to any path it does not know.
        "^~ ${paths.prefix}" = toGate name [ gateBodyLimit ];
        "= ${paths.auth}" = toGate name ([ "internal;" ] ++ noBody);
        # Password submissions (POST) meet nginx's per-address flood guard before
        # the gate's own per-address limit on wrong passwords.
        "= ${paths.login}" = toGate name [
          gateBodyLimit
          "limit_req zone=csm_login burst=${toString limits.loginBurst} nodelay;"
          "limit_req_status 429;"
          "error_page 429 @csm_rate_limited;"
        ];
        # No session: the login page in place of what was asked for (HTTP 401).
        # A flood of requests without a session meets nginx's per-address limit here,
        # before the gate: a person loads one login page, a script hundreds.
        "@csm_login" = toGate name ([
          "rewrite ^ ${paths.login}?wall? break;"   # the trailing ? drops the page's own query
          "limit_req zone=csm_wall burst=${toString limits.wallBurst} nodelay;"
          "limit_req_status 429;"
        ] ++ noBody);
        # A logged-in request met a stopped container: the gate starts it.
        "@csm_wake" = toGate name ([ "rewrite ^ ${paths.wake}? break;" ] ++ noBody);
        # What a person sees when limited: what happened and what to do.
        "@csm_rate_limited" = {
          proxyPass = null;
          config = [ "default_type text/html;" "return 429 \"${pages.rateLimited}\";" ];
        };
      };
    };

  # plan.nginx
  plan = {
    httpConfig = [
      # Only POSTs have a key: requests with an empty key are not counted.
      "map $request_method $csm_login_key { POST $binary_remote_addr; default ''; }"
      "limit_req_zone $csm_login_key zone=csm_login:10m rate=${limits.loginRate};"
      "map $http_upgrade $csm_connection_upgrade { default upgrade; '' close; }"
      "limit_conn_zone $binary_remote_addr zone=csm_conn:10m;"
      "limit_req_zone $binary_remote_addr zone=csm_wall:10m rate=${limits.wallRate};"
      # Whether a request carries a session cookie at all (the gate decides if it is valid).
      "map $http_cookie $csm_has_session { default 0; \"~(^|;\\s*)(${gate.plan.cookie.http}|${gate.plan.cookie.https})=[^;]\" 1; }"
      "upstream csm_gate { server unix:${gate.plan.socket}; keepalive 64; }"
    ];
    serverNamesHashBucketSize = bucketSize;
    # Two per proxied request (client and upstream), for a class behind one address.
    inherit workerConnections;
    # nginx's main context: a worker per core (nginx's own default is one), and
    # room for both ends of each of its connections plus logs and listeners.
    mainConfig = [ "worker_processes auto;" "worker_rlimit_nofile ${toString (2 * workerConnections)};" ];
    tlsConfig = [
      "add_header Strict-Transport-Security \"max-age=31536000\" always;"
    ];
    # Unknown subdomains and unknown Host headers: the landing page, 404, no upstream.
    defaultServer = {
      landingHtml = pages.landing;
      config = [ "error_page 404 /index.html;" ];
      locations = {
        "/" = [ "return 404;" ];
        "= /index.html" = [ "internal;" ];
      };
    };
  };
}
