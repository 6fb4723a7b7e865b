from specwise.cli import app

app(prog_name="specwise")
