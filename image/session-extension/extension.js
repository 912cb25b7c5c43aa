// "Log out" in the status bar and the command palette: opens the gate's logout page
// (CSM_LOGOUT_PATH, from the plan) at the address the browser uses for this workspace,
// in a new tab that asks to confirm. The address comes from asExternalUri, which
// code-server answers with the browser's own origin. The status bar item runs
// `vscode.open` in the page itself, so the browser sees the click open the tab.
const vscode = require("vscode");

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
}

module.exports = { activate };
