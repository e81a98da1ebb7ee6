"""A small Flask API of the kind the gateway protects: it knows nothing of
trailguard. A login that hands out a session token, a role change that only
admins may make, a profile read. Run: python3 app.py; it listens on a free
port of 127.0.0.1 and prints "listening PORT" on stdout."""

import secrets
import sys

from flask import Flask, jsonify, request
from werkzeug.serving import make_server

app = Flask(__name__)

USERS = {
    "alice": {"password": "wonderland-7", "role": "admin"},
    "bob": {"password": "builder-9", "role": "viewer"},
}
SESSIONS = {}


def credentials():
    body = request.get_json(silent=True)
    if body is None:
        body = request.form
    return body.get("username"), body.get("password")


@app.post("/login")
def login():
    name, password = credentials()
    user = USERS.get(name)
    if user is None or user["password"] != password:
        return jsonify(error="invalid credentials"), 401
    token = secrets.token_hex(16)
    SESSIONS[token] = name
    return jsonify(token=token, user=name)


def actor():
    auth = request.headers.get("Authorization", "")
    if not auth.startswith("Bearer "):
        return None
    return SESSIONS.get(auth[len("Bearer "):])


@app.put("/api/users/<uid>/role")
def set_role(uid):
    who = actor()
    if who is None:
        return jsonify(error="log in first"), 401
    if USERS[who]["role"] != "admin":
        return jsonify(error="admins only"), 403
    if uid not in USERS:
        return jsonify(error="no such user"), 404
    role = (request.get_json(silent=True) or {}).get("role")
    if role not in ("admin", "viewer"):
        return jsonify(error="role must be admin or viewer"), 400
    USERS[uid]["role"] = role
    return jsonify(id=uid, role=role)


@app.get("/api/users/<uid>")
def profile(uid):
    if actor() is None:
        return jsonify(error="log in first"), 401
    if uid not in USERS:
        return jsonify(error="no such user"), 404
    return jsonify(id=uid, role=USERS[uid]["role"])


if __name__ == "__main__":
    server = make_server("127.0.0.1", 0, app, threaded=True)
    print("listening", server.server_port, flush=True)
    server.serve_forever()
