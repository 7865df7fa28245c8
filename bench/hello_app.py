"""The baseline for bench/api.py: FastAPI's hello world, served like the Runyard API."""

from fastapi import FastAPI

app = FastAPI()


@app.get("/hello")
async def hello() -> dict[str, str]:
    return {"message": "hello"}
