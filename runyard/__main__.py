from runyard.cli import app

app()
