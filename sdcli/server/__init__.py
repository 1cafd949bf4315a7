"""The HTTP side of sdcli: `sdcli serve` (a FastAPI app speaking the AUTOMATIC1111 WebUI API,
app.py + schemas.py, generating through engine.py with sdcli's core) and the client the CLI's
`--server URL` uses (client.py: standard library only, no torch). May import core, models,
sampling and errors; nothing here is imported by `sdcli --help`."""
