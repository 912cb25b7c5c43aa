# plan.backup.schedule, a systemd OnCalendar expression (what the NixOS timer takes),
# as a CronJob's schedule: a pure function, builtins only.
#
#   import ./kube-schedule.nix "Mon *-*-* 02:30"   # -> { schedule = "30 2 * * 1"; timeZone = null; }
#
# Only what cron says exactly is translated: the shorthands (daily, weekly, ...) and
# "[WEEKDAYS] [*-MONTH-DAY] HOUR:MINUTE[:00] [TIME ZONE]" whose parts are numbers,
# "*", lists, ranges (a..b) and steps (a/n). The rest is refused, naming the setting,
# its value and what to write instead: seconds other than 00, a year, the last days
# of a month (~), weekday ranges against systemd's Mon..Sun order, and weekdays
# together with days of the month (systemd needs both to match, cron either).
schedule:
let
  inherit (builtins) concatStringsSep elem elemAt filter fromJSON genList head
    isString length listToAttrs map match split sort stringLength tail toJSON;

  lib = import ./plan/lib.nix;
  inherit (lib) toLower splitOn;

  example = "write it like \"daily\", \"*-*-* 03:00:00\" or \"Mon *-*-* 02:30\"";
  refuse = why: throw ("code-server-multi: invalid settings:\n  - backup.schedule = ${toJSON schedule} "
    + "cannot be said exactly as a Kubernetes CronJob schedule (cron): ${why}");

  # systemd's shorthands (systemd.time(7)) as cron.
  shorthands = {
    minutely = "* * * * *";
    hourly = "0 * * * *";
    daily = "0 0 * * *";
    weekly = "0 0 * * 1";
    monthly = "0 0 1 * *";
    quarterly = "0 0 1 1,4,7,10 *";
    semiannually = "0 0 1 1,7 *";
    yearly = "0 0 1 1 *";
    annually = "0 0 1 1 *";
  };

  # Mon..Sun is systemd's week; cron counts Sun = 0, Mon = 1, ..., Sat = 6.
  days = [ "mon" "tue" "wed" "thu" "fri" "sat" "sun" ];
  dayIndex = listToAttrs (genList (i: { name = elemAt days i; value = i; }) 7);
  dayOf = word: let w = toLower word; in
    if dayIndex ? ${w} then dayIndex.${w}
    else let full = filter (d: stringLength w > 3 && w == toLower (fullDay d)) days; in
      if full != [ ] then dayIndex.${head full}
      else refuse "${toJSON word} is not a day of the week; use Mon, Tue, Wed, Thu, Fri, Sat, Sun; ${example}";
  fullDay = d: { mon = "Monday"; tue = "Tuesday"; wed = "Wednesday"; thu = "Thursday";
                 fri = "Friday"; sat = "Saturday"; sun = "Sunday"; }.${d};
  cronDay = i: if i == 6 then 0 else i + 1;
  range = a: b: genList (i: a + i) (b - a + 1);
  weekdays = text: let
    indices = builtins.concatLists (map (item:
      let r = match "([A-Za-z]+)\\.\\.([A-Za-z]+)" item; in
      if r == null then [ (dayOf item) ]
      else let a = dayOf (elemAt r 0); b = dayOf (elemAt r 1); in
        if a > b then refuse "the range ${toJSON item} runs backwards in systemd's week, which starts on Monday; write the days from Mon to Sun (e.g. \"Mon..Fri\", or \"Sat,Sun\"), or leave them out for every day"
        else range a b) (splitOn "," text));
    in concatStringsSep "," (map toString (sort (a: b: a < b) (uniq (map cronDay indices))));
  uniq = xs: builtins.foldl' (acc: x: if elem x acc then acc else acc ++ [ x ]) [ ] xs;

  # One numeric part (minute, hour, day, month) as a cron field.
  number = what: lo: hi: t:
    let n = fromJSON (let s = match "0*([0-9]+)" t; in if s == null then "x" else head s); in
    if match "[0-9]+" t == null then refuse "the ${what} ${toJSON t} is not a number"
    else if n < lo || n > hi then refuse "the ${what} ${toJSON t} is not between ${toString lo} and ${toString hi}; ${example}"
    else n;
  field = what: lo: hi: text:
    if text == "*" then "*"
    else if match ".*~.*" text != null then refuse "\"~\" (days counted from the end of the month) has no cron form; name the days, e.g. \"*-*-28\""
    else concatStringsSep "," (map (item:
      let
        step = match "([0-9]+)(\\.\\.([0-9]+))?/([0-9]+)" item;
        span = match "([0-9]+)\\.\\.([0-9]+)" item;
      in
      if match "[0-9]+" item != null then toString (number what lo hi item)
      else if span != null then
        let a = number what lo hi (elemAt span 0); b = number what lo hi (elemAt span 1); in
        if a > b then refuse "the ${what} range ${toJSON item} runs backwards; write the smaller number first"
        else "${toString a}-${toString b}"
      else if step != null then
        let a = number what lo hi (elemAt step 0);
            b = if elemAt step 2 == null then hi else number what lo hi (elemAt step 2);
            n = number what 1 hi (elemAt step 3); in
        if a > b then refuse "the ${what} range ${toJSON item} runs backwards; write the smaller number first"
        else "${toString a}-${toString b}/${toString n}"
      else refuse "the ${what} ${toJSON item} is not a number, a list (1,15), a range (1..5) or a step (0/15); ${example}")
      (splitOn "," text));

  words = filter (w: isString w && w != "") (split " +" schedule);
  isDate = w: match "[0-9*.,/~-]+-[0-9*.,/~-]+" w != null && match ".*:.*" w == null;
  isTime = w: match ".*:.*" w != null;
  isZone = w: w == "UTC" || match "[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)+" w != null;

  full = let
    w0 = if words != [ ] && !(isDate (head words)) && !(isTime (head words)) then head words else null;
    rest0 = if w0 == null then words else tail words;
    date = if rest0 != [ ] && isDate (head rest0) then head rest0 else "*-*-*";
    rest1 = if rest0 != [ ] && isDate (head rest0) then tail rest0 else rest0;
    time = if rest1 != [ ] && isTime (head rest1) then head rest1 else "00:00:00";
    rest2 = if rest1 != [ ] && isTime (head rest1) then tail rest1 else rest1;
    zone = if rest2 != [ ] && isZone (head rest2) then head rest2 else null;
    rest3 = if zone != null then tail rest2 else rest2;
    dateParts = splitOn "-" date;
    ymd = if length dateParts == 3 then dateParts else [ "*" ] ++ dateParts;
    hms = splitOn ":" time;
    seconds = if length hms == 3 then elemAt hms 2 else "00";
    dow = if w0 == null then "*" else weekdays w0;
    dom = field "day" 1 31 (elemAt ymd 2);
  in
    if words == [ ] then refuse "it is empty; ${example}"
    else if rest3 != [ ] then refuse "${toJSON (head rest3)} is not understood here; the form is \"[WEEKDAYS] [*-MONTH-DAY] HOUR:MINUTE[:00] [TIME ZONE]\", e.g. \"Mon *-*-* 02:30\""
    else if length dateParts < 2 || length dateParts > 3 then refuse "the date ${toJSON date} is not YEAR-MONTH-DAY; ${example}"
    else if elemAt ymd 0 != "*" then refuse "cron has no year; write \"*\" for the year (\"*-${elemAt ymd 1}-${elemAt ymd 2}\")"
    else if length hms < 2 || length hms > 3 then refuse "the time ${toJSON time} is not HOUR:MINUTE or HOUR:MINUTE:SECOND; ${example}"
    else if match "0*" seconds == null || seconds == "" then refuse "cron starts jobs on the minute, and the seconds are ${toJSON seconds}; write \":00\" or leave the seconds out (e.g. \"*-*-* 03:00:00\")"
    else if dow != "*" && dom != "*" then refuse "it names days of the week and days of the month, which systemd needs both to match and cron either; name only one of them"
    else {
      schedule = concatStringsSep " " [
        (field "minute" 0 59 (elemAt hms 1))
        (field "hour" 0 23 (elemAt hms 0))
        dom
        (field "month" 1 12 (elemAt ymd 1))
        dow
      ];
      timeZone = zone;
    };
in
if !(isString schedule) then refuse "it is not a string; ${example}"
else if shorthands ? ${toLower schedule} then { schedule = shorthands.${toLower schedule}; timeZone = null; }
else full
