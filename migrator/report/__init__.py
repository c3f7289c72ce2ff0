"""Reports of a plan and its run: model.py gathers the facts, markdown.py / html.py render them, mermaid.py and
svg.py draw the apps -> groups -> mailboxes diagram (summarised where large)."""
