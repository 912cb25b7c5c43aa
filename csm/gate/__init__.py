"""The gate: the one front door in front of every user's code-server (see server.py
for what it answers, core.py for what it decides, control.py for how it reaches the
root side). It runs as its own unprivileged account:

    csm gate serve --plan /etc/code-server-multi/plan.json --credentials "$CREDENTIALS_DIRECTORY"
"""
