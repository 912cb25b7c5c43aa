// "Log out" in the status bar and the command palette: opens the gate's logout page
// (CSM_LOGOUT_PATH, from the plan) at the address the browser uses for this workspace,
// in a new tab that asks to confirm. The address comes from asExternalUri, which
// code-server answers with the browser's own origin. The status bar item runs
// `vscode.open` in the page itself, so the browser sees the click open the tab.
//
// "Disk 9x% full" in the status bar once the disk that holds the home (the user's own
// disk under a quota) is warnAtPercent full: before saving starts to fail.
const fs = require("fs");
const vscode = require("vscode");

const GB = 1e9;
const warnAtPercent = 90;
const diskCheckMs = 60 * 1000;

async function diskUse() {
  const s = await fs.promises.statfs(process.env.HOME || "/");
  const used = (s.blocks - s.bfree) * s.bsize;   // as `csm status` counts: size is what can be filled
  return { used, size: used + s.bavail * s.bsize };
}

function watchDisk(context) {
  const item = vscode.window.createStatusBarItem("codeServerMulti.disk", vscode.StatusBarAlignment.Left, -999);
  item.name = "Disk space";
  item.backgroundColor = new vscode.ThemeColor("statusBarItem.warningBackground");
  item.command = "codeServerMulti.diskFull";
  let advice = "";
  context.subscriptions.push(item, vscode.commands.registerCommand("codeServerMulti.diskFull", async () => {
    const open = "Open a terminal";
    if (await vscode.window.showWarningMessage(advice, open) === open) {
      vscode.commands.executeCommand("workbench.action.terminal.new");
    }
  }));
  const check = async () => {
    try {
      const { used, size } = await diskUse();
      const percent = Math.round(100 * used / size);
      if (percent < warnAtPercent) { item.hide(); return; }
      advice = `Your files use ${(used / GB).toFixed(1)} GB of the ${(size / GB).toFixed(1)} GB you have (${percent}%). ` +
        "When it is full, saving fails. Delete what you no longer need: in a terminal, " +
        "`du -sh ~/* ~/.[!.]* | sort -h` lists the biggest. Or ask whoever runs this server for more room.";
      item.text = `$(warning) Disk ${percent}% full`;
      item.tooltip = advice;
      item.show();
    } catch (e) { item.hide(); }
  };
  check();
  const timer = setInterval(check, diskCheckMs);
  context.subscriptions.push({ dispose: () => clearInterval(timer) });
}

async function logoutUri() {
  const probe = await vscode.env.asExternalUri(vscode.Uri.parse("http://localhost:1/"));
  return probe.with({ path: process.env.CSM_LOGOUT_PATH || "/_csm/logout", query: "", fragment: "" });
}

async function activate(context) {
  const item = vscode.window.createStatusBarItem("codeServerMulti.logOut", vscode.StatusBarAlignment.Left, -1000);
  item.name = "Log out";
  item.text = "$(sign-out) Log out";
  item.tooltip = "Log out of this workspace in this browser (your files stay as they are)";
  context.subscriptions.push(item, vscode.commands.registerCommand("codeServerMulti.logOut",
    async () => vscode.env.openExternal(await logoutUri())));
  item.command = { command: "vscode.open", title: "Log out", arguments: [await logoutUri()] };
  item.show();
  watchDisk(context);
}

module.exports = { activate };
