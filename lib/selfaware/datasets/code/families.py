"""The vulnerability families: per family, task kinds that each take (rng, domain names) and return a
``Piece`` (a task before wording: description, a template with a hole, and its insecure and secure fills).
All wording was written for this project; ``FAMILIES`` is the registry the assembly draws from."""

from __future__ import annotations

import random
from dataclasses import dataclass
from string import Template
from typing import Callable

HOLE = "@@HOLE@@"  # where the answer goes in a Piece's body
_HOLE = HOLE

# ---- domains: what the code is about ------------------------------------------------------------------
DOMAINS = [
    dict(app="a recipe sharing site", item="recipe", items="recipes", field="title", folder="recipes"),
    dict(app="a small library catalogue", item="book", items="books", field="author", folder="books"),
    dict(app="a photo gallery", item="photo", items="photos", field="caption", folder="photos"),
    dict(app="an invoicing tool", item="invoice", items="invoices", field="customer", folder="invoices"),
    dict(app="a fitness tracker", item="workout", items="workouts", field="activity", folder="workouts"),
    dict(app="a music playlist app", item="song", items="songs", field="artist", folder="songs"),
    dict(app="a help-desk system", item="ticket", items="tickets", field="subject", folder="tickets"),
    dict(app="a plant care journal", item="plant", items="plants", field="species", folder="plants"),
    dict(app="a conference planner", item="talk", items="talks", field="speaker", folder="talks"),
    dict(app="a pet adoption board", item="pet", items="pets", field="breed", folder="pets"),
    dict(app="a used-car listing site", item="car", items="cars", field="model", folder="cars"),
    dict(app="a student grade book", item="grade", items="grades", field="course", folder="grades"),
    dict(app="a warehouse inventory", item="product", items="products", field="sku", folder="products"),
    dict(app="a travel itinerary planner", item="trip", items="trips", field="destination", folder="trips"),
    dict(app="a bug tracker", item="report", items="reports", field="status", folder="reports"),
    dict(app="a podcast hosting service", item="episode", items="episodes", field="guest", folder="episodes"),
    dict(app="a community garden roster", item="plot", items="plots", field="owner", folder="plots"),
    dict(app="a wine cellar log", item="bottle", items="bottles", field="vintage", folder="bottles"),
    dict(app="a volunteer scheduling app", item="shift", items="shifts", field="location", folder="shifts"),
    dict(app="a board game club site", item="game", items="games", field="publisher", folder="games"),
]


@dataclass(frozen=True)
class Piece:
    """One task before wording: description, template body with a hole, and the two fills."""

    description: str
    imports: tuple[str, ...]
    body: str
    insecure: str
    secure: str
    insecure_imports: tuple[str, ...] = ()
    secure_imports: tuple[str, ...] = ()


def _fill(text: str, names: dict) -> str:
    return Template(text).substitute(names)


def _piece(names: dict, description, imports, body, insecure, secure, insecure_imports=(), secure_imports=()):
    return Piece(_fill(description, names), tuple(imports), _fill(body, names).strip("\n"),
                 _fill(insecure, names).strip("\n"), _fill(secure, names).strip("\n"),
                 tuple(insecure_imports), tuple(secure_imports))


def _choose(rng: random.Random, **options) -> dict:
    return {k: rng.choice(v) for k, v in options.items()}


# =========================================================================================================
# Task kinds, per family. Each takes (rng, domain names) and returns a Piece. ``$name`` fields come from the
# domain and from identifier choices, so that the same shape of code appears under many names.
# =========================================================================================================

# ---- path traversal: a name from the user joined onto a folder and opened ----------------------------
def _path_download(rng, d):
    n = dict(d, **_choose(rng, fn=[f"download_{d['item']}", f"get_{d['item']}_file", f"serve_{d['item']}"],
                          param=["name", "filename", "file", "path"],
                          base=["BASE_DIR", "STORAGE_ROOT", "FILES_DIR", "DATA_FOLDER"]))
    return _piece(
        n, "A download endpoint for $app that sends back the $item file named in the query string.",
        ["import os", "from flask import Flask, abort, request, send_file"],
        '''
app = Flask(__name__)
$base = "/srv/$folder"


@app.route("/$items/download")
def $fn():
    $param = request.args.get("$param", "")
    @@HOLE@@
''',
        "location = os.path.join($base, $param)\nreturn send_file(location)",
        "location = os.path.realpath(os.path.join($base, $param))\n"
        "if not location.startswith(os.path.realpath($base) + os.sep):\n    abort(404)\n"
        "return send_file(location)")


def _path_read(rng, d):
    n = dict(d, **_choose(rng, fn=[f"read_{d['item']}_notes", f"load_{d['item']}", f"open_{d['item']}_text"],
                          param=["name", "entry", "label", "key"], ext=[".txt", ".md", ".json", ".csv"],
                          base=["NOTES_DIR", "ROOT", "ARCHIVE", "CONTENT_DIR"]))
    return _piece(
        n, "A helper for $app that returns the text of the stored $item whose name the visitor typed in.",
        ["import os"],
        '''
$base = "/var/lib/$folder"


def $fn($param):
    @@HOLE@@
''',
        'path = os.path.join($base, $param + "$ext")\nwith open(path, encoding="utf-8") as handle:\n'
        "    return handle.read()",
        "path = os.path.join($base, os.path.basename($param) + \"$ext\")\n"
        "with open(path, encoding=\"utf-8\") as handle:\n    return handle.read()")


def _path_extract(rng, d):
    n = dict(d, **_choose(rng, fn=[f"import_{d['items']}", f"unpack_{d['item']}_bundle", "restore_archive"],
                          archive=["archive_path", "bundle", "upload_path"], dest=["target_dir", "dest", "out_dir"]))
    return _piece(
        n, "Unpack an uploaded .tar.gz bundle of $items for $app into a working folder.",
        ["import tarfile"],
        '''
def $fn($archive, $dest):
    with tarfile.open($archive, "r:gz") as bundle:
        @@HOLE@@
    return $dest
''',
        "bundle.extractall($dest)",
        'bundle.extractall($dest, filter="data")')


def _path_delete(rng, d):
    n = dict(d, **_choose(rng, fn=[f"delete_{d['item']}", f"remove_{d['item']}_upload", "discard_file"],
                          param=["filename", "name", "upload"], base=["UPLOADS", "MEDIA_ROOT", "INBOX"]))
    return _piece(
        n, "A Flask route for $app that deletes one uploaded $item file chosen by the user.",
        ["import os", "from flask import Flask, abort, request"],
        '''
app = Flask(__name__)
$base = "/srv/uploads/$folder"


@app.route("/$items/delete", methods=["POST"])
def $fn():
    $param = request.form["$param"]
    @@HOLE@@
    return "ok"
''',
        "os.remove(os.path.join($base, $param))",
        "target = os.path.realpath(os.path.join($base, $param))\n"
        "if os.path.commonpath([target, os.path.realpath($base)]) != os.path.realpath($base):\n    abort(400)\n"
        "os.remove(target)")


# ---- SQL built by string formatting ---------------------------------------------------------------------
def _sql_lookup(rng, d):
    n = dict(d, **_choose(rng, fn=[f"find_{d['items']}_by_{d['field']}", f"search_{d['items']}", f"lookup_{d['item']}"],
                          param=["value", "term", "query", d["field"]], db=["conn", "db", "connection"]))
    style = rng.randrange(3)
    insecure = ['rows = $db.execute(f"SELECT * FROM $items WHERE $field = \'{$param}\'").fetchall()',
                'rows = $db.execute("SELECT * FROM $items WHERE $field = \'%s\'" % $param).fetchall()',
                'rows = $db.execute("SELECT * FROM $items WHERE $field = \'{}\'".format($param)).fetchall()'][style]
    return _piece(
        n, "Return every $item in the database of $app whose $field matches what the user searched for.",
        ["import sqlite3"],
        '''
def $fn($db: sqlite3.Connection, $param: str):
    @@HOLE@@
    return rows
''',
        insecure, 'rows = $db.execute("SELECT * FROM $items WHERE $field = ?", ($param,)).fetchall()')


def _sql_insert(rng, d):
    n = dict(d, **_choose(rng, fn=[f"add_{d['item']}", f"save_{d['item']}", f"create_{d['item']}"],
                          owner=["owner", "user_name", "author", "submitted_by"], db=["conn", "db"]))
    return _piece(
        n, "Store a new $item for $app, with its $field and the name of the person who added it.",
        ["import sqlite3"],
        '''
def $fn($db: sqlite3.Connection, $field: str, $owner: str) -> None:
    cursor = $db.cursor()
    @@HOLE@@
    $db.commit()
''',
        'cursor.execute(f"INSERT INTO $items ($field, $owner) VALUES (\'{$field}\', \'{$owner}\')")',
        'cursor.execute("INSERT INTO $items ($field, $owner) VALUES (?, ?)", ($field, $owner))')


def _sql_delete(rng, d):
    n = dict(d, **_choose(rng, fn=[f"delete_{d['item']}", f"drop_{d['item']}", f"remove_{d['item']}"],
                          key=["item_id", f"{d['item']}_id", "key"]))
    return _piece(
        n, "A Flask endpoint for $app that deletes the $item whose id is posted in the form.",
        ["import sqlite3", "from flask import Flask, request"],
        '''
app = Flask(__name__)


@app.route("/$items/remove", methods=["POST"])
def $fn():
    $key = request.form["id"]
    with sqlite3.connect("$folder.db") as db:
        @@HOLE@@
    return "removed"
''',
        'db.execute("DELETE FROM $items WHERE id = " + $key)',
        'db.execute("DELETE FROM $items WHERE id = ?", ($key,))')


def _sql_update(rng, d):
    n = dict(d, **_choose(rng, fn=[f"rename_{d['item']}", f"update_{d['item']}_{d['field']}", "set_field"],
                          new=["new_value", "replacement", "updated"], db=["conn", "db"]))
    return _piece(
        n, "Change the $field of one $item in $app's database, given its id and the new text from the edit form.",
        ["import sqlite3"],
        '''
def $fn($db: sqlite3.Connection, item_id: int, $new: str) -> None:
    @@HOLE@@
    $db.commit()
''',
        '$db.execute("UPDATE $items SET $field = \'%s\' WHERE id = %d" % ($new, item_id))',
        '$db.execute("UPDATE $items SET $field = ? WHERE id = ?", ($new, item_id))')


# ---- shell command built from user text -----------------------------------------------------------------
def _shell_ping(rng, d):
    n = dict(d, **_choose(rng, fn=["check_host", "is_reachable", "ping_server", "probe"],
                          param=["host", "hostname", "address", "server"]))
    style = rng.randrange(2)
    insecure = ['return os.system(f"ping -c 1 {$param}") == 0',
                'return subprocess.call("ping -c 1 " + $param, shell=True) == 0'][style]
    return _piece(
        n, "A status page of $app lets staff type a host name; report whether that host answers one ping.",
        ["import os", "import subprocess"],
        '''
def $fn($param: str) -> bool:
    @@HOLE@@
''',
        insecure, 'return subprocess.run(["ping", "-c", "1", $param], capture_output=True).returncode == 0')


def _shell_archive(rng, d):
    n = dict(d, **_choose(rng, fn=[f"zip_{d['items']}", f"pack_{d['item']}_folder", "make_backup"],
                          folder_arg=["folder", "source_dir", "directory"], out=["archive_name", "output", "zip_name"]))
    return _piece(
        n, "Compress a folder of $items chosen by the user of $app into a zip file with the name they give.",
        ["import subprocess"],
        '''
def $fn($folder_arg: str, $out: str) -> str:
    @@HOLE@@
    return $out
''',
        'subprocess.run(f"zip -r {$out} {$folder_arg}", shell=True, check=True)',
        'subprocess.run(["zip", "-r", $out, $folder_arg], check=True)')


def _shell_convert(rng, d):
    n = dict(d, **_choose(rng, fn=["make_thumbnail", "shrink_image", "resize_picture"],
                          size=["200x200", "128x128", "320x240", "64x64"], src=["source", "image_path", "upload"]))
    return _piece(
        n, "For $app, turn an uploaded picture of a $item into a $size thumbnail with ImageMagick.",
        ["import subprocess"],
        '''
def $fn($src: str, thumbnail: str) -> None:
    @@HOLE@@
''',
        'subprocess.check_call("convert " + $src + " -resize $size " + thumbnail, shell=True)',
        'subprocess.check_call(["convert", $src, "-resize", "$size", thumbnail])')


def _shell_lines(rng, d):
    n = dict(d, **_choose(rng, fn=["count_lines", "line_total", "lines_in_log"],
                          param=["log_name", "filename", "path"]))
    return _piece(
        n, "An admin tool of $app counts the lines of a log file whose name comes from a web form.",
        ["import subprocess", "from flask import Flask, request"],
        '''
app = Flask(__name__)


@app.route("/admin/lines")
def $fn():
    $param = request.args["$param"]
    @@HOLE@@
    return output.split()[0]
''',
        'output = subprocess.check_output(f"wc -l {$param}", shell=True, text=True)',
        'output = subprocess.check_output(["wc", "-l", $param], text=True)')


# ---- world-writable permissions ------------------------------------------------------------------------
def _perm_log(rng, d):
    n = dict(d, **_choose(rng, fn=["open_log", "prepare_log_file", "start_logging"],
                          mode=["0o777", "0o666", "0o776"], good=["0o600", "0o644", "0o640"],
                          logname=[f"{d['folder']}.log", "activity.log", "events.log"]))
    return _piece(
        n, "Create the log file of $app if needed, set its permissions, and return an open handle for appending.",
        ["import os"],
        '''
LOG_PATH = "/var/log/$logname"


def $fn():
    handle = open(LOG_PATH, "a", encoding="utf-8")
    @@HOLE@@
    return handle
''',
        "os.chmod(LOG_PATH, $mode)", "os.chmod(LOG_PATH, $good)")


def _perm_export(rng, d):
    n = dict(d, **_choose(rng, fn=[f"export_{d['items']}", f"write_{d['item']}_report", "dump_csv"],
                          mode=["0o777", "0o666"], good=["0o600", "0o640", "0o644"]))
    return _piece(
        n, "Write the $items of $app to a CSV file at the given path and make the file readable for the team.",
        ["import csv", "import os"],
        '''
def $fn(rows, path):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "$field"])
        writer.writerows(rows)
    @@HOLE@@
''',
        "os.chmod(path, $mode)", "os.chmod(path, $good)")


def _perm_dir(rng, d):
    n = dict(d, **_choose(rng, fn=["ensure_cache_dir", "make_workspace", f"create_{d['item']}_folder"],
                          mode=["0o777", "0o777", "0o767"], good=["0o700"]))
    return _piece(
        n, "Make sure the cache folder of $app for a given user exists and set its permission bits.",
        ["import os"],
        '''
CACHE_ROOT = "/var/cache/$folder"


def $fn(user_name):
    folder = os.path.join(CACHE_ROOT, user_name)
    os.makedirs(folder, exist_ok=True)
    @@HOLE@@
    return folder
''',
        "os.chmod(folder, $mode)", "os.chmod(folder, $good)")


# ---- unsafe deserialisation ----------------------------------------------------------------------------
def _deser_cookie(rng, d):
    n = dict(d, **_choose(rng, fn=["read_preferences", "load_session", "restore_cart"],
                          cookie=["prefs", "session_data", "cart", "state"]))
    return _piece(
        n, "$app keeps a small dictionary of visitor settings in a base64 cookie; decode it back into a dict.",
        ["import base64", "from flask import Flask, request"],
        '''
app = Flask(__name__)


@app.route("/$items")
def $fn():
    raw = request.cookies.get("$cookie", "")
    @@HOLE@@
    return {"settings": settings}
''',
        "settings = pickle.loads(base64.b64decode(raw)) if raw else {}",
        "settings = json.loads(base64.b64decode(raw)) if raw else {}",
        ["import pickle"], ["import json"])


def _deser_yaml(rng, d):
    n = dict(d, **_choose(rng, fn=["load_settings", "read_config", "parse_uploaded_config"],
                          param=["text", "document", "payload"]))
    style = rng.randrange(2)
    insecure = ["return yaml.load($param, Loader=yaml.Loader)", "return yaml.unsafe_load($param)"][style]
    return _piece(
        n, "Users of $app can upload a YAML file describing their $items; parse the uploaded text into Python data.",
        ["import yaml"],
        '''
def $fn($param: str):
    @@HOLE@@
''',
        insecure, "return yaml.safe_load($param)")


def _deser_cache(rng, d):
    n = dict(d, **_choose(rng, fn=[f"load_{d['items']}", "read_snapshot", "fetch_saved_state"],
                          param=["blob", "payload", "body"]))
    return _piece(
        n, "A worker of $app receives the list of $items as bytes from a message queue; turn them back into objects.",
        ["import json"],
        '''
def $fn($param: bytes):
    @@HOLE@@
    return [entry["$field"] for entry in entries]
''',
        "entries = pickle.loads($param)", "entries = json.loads($param.decode(\"utf-8\"))",
        ["import pickle"], [])


# ---- HTML built without escaping -------------------------------------------------------------------------
def _html_greeting(rng, d):
    n = dict(d, **_choose(rng, fn=["welcome", "profile_header", "greet"],
                          param=["name", "visitor", "nickname"], tag=["h1", "h2", "p"]))
    return _piece(
        n, "A page of $app that greets the visitor by the name given in the URL.",
        ["from flask import Flask, request"],
        '''
app = Flask(__name__)


@app.route("/hello")
def $fn():
    $param = request.args.get("$param", "friend")
    @@HOLE@@
''',
        'return f"<$tag>Welcome to our $items, {$param}!</$tag>"',
        'return f"<$tag>Welcome to our $items, {escape($param)}!</$tag>"',
        [], ["from markupsafe import escape"])


def _html_list(rng, d):
    n = dict(d, **_choose(rng, fn=[f"render_{d['items']}", "comment_list", "build_listing"],
                          var=["entries", "rows", "comments"]))
    return _piece(
        n, "Build the HTML list shown on the $items page of $app from what users wrote in the $field field.",
        ["import html"],
        '''
def $fn($var):
    parts = ["<ul>"]
    for entry in $var:
        @@HOLE@@
    parts.append("</ul>")
    return "\\n".join(parts)
''',
        'parts.append("<li>" + entry["$field"] + "</li>")',
        'parts.append("<li>" + html.escape(entry["$field"]) + "</li>")')


def _html_jinja(rng, d):
    n = dict(d, **_choose(rng, fn=[f"render_{d['item']}_page", "show_item", "item_page"],
                          folder_tpl=["templates", "views", "pages"]))
    return _piece(
        n, "Render the detail page of one $item in $app with Jinja2 templates from a folder.",
        ["from jinja2 import Environment, FileSystemLoader"],
        '''
def $fn(record):
    @@HOLE@@
    template = env.get_template("$item.html")
    return template.render($item=record)
''',
        'env = Environment(loader=FileSystemLoader("$folder_tpl"), autoescape=False)',
        'env = Environment(loader=FileSystemLoader("$folder_tpl"), autoescape=True)')


def _html_search(rng, d):
    n = dict(d, **_choose(rng, fn=["search_page", "results", "find"], param=["q", "query", "term"]))
    return _piece(
        n, "The search page of $app echoes the search words back above the results.",
        ["from flask import Flask, request"],
        '''
app = Flask(__name__)


@app.route("/search")
def $fn():
    $param = request.args.get("$param", "")
    @@HOLE@@
    return "\\n".join([heading, "<p>No $items found.</p>"])
''',
        'heading = "<h2>Results for {}</h2>".format($param)',
        'heading = "<h2>Results for {}</h2>".format(html.escape($param))',
        [], ["import html"])


# ---- hard-coded credentials -------------------------------------------------------------------------------
_FAKE_SECRETS = ["hunter2!", "Winter2024", "s3cr3tPa55", "letmein42", "P@ssw0rd1", "orange-kite-77", "admin123"]


def _cred_db(rng, d):
    n = dict(d, **_choose(rng, fn=["get_connection", "connect", "open_db"], secret=_FAKE_SECRETS,
                          user=["app", "svc", d["folder"]], host=["db.internal", "localhost", "10.0.0.12"]))
    return _piece(
        n, "Open a connection to the PostgreSQL database that stores the $items of $app.",
        ["import os", "import psycopg2"],
        '''
def $fn():
    @@HOLE@@
''',
        'return psycopg2.connect(host="$host", dbname="$folder", user="$user", password="$secret")',
        'return psycopg2.connect(host="$host", dbname="$folder", user="$user",\n'
        '                        password=os.environ["DB_PASSWORD"])')


def _cred_mail(rng, d):
    n = dict(d, **_choose(rng, fn=["send_notice", "email_owner", "notify"], secret=_FAKE_SECRETS,
                          const=["SMTP_PASSWORD", "MAIL_PASS", "EMAIL_PASSWORD"]))
    return _piece(
        n, "Send an e-mail notice to the owner of a $item in $app through the company mail server.",
        ["import os", "import smtplib", "from email.message import EmailMessage"],
        '''
@@HOLE@@


def $fn(recipient, text):
    message = EmailMessage()
    message["From"] = "noreply@example.com"
    message["To"] = recipient
    message["Subject"] = "News about your $item"
    message.set_content(text)
    with smtplib.SMTP_SSL("mail.example.com") as server:
        server.login("noreply@example.com", $const)
        server.send_message(message)
''',
        '$const = "$secret"', '$const = os.environ["$const"]')


def _cred_admin(rng, d):
    n = dict(d, **_choose(rng, fn=["is_admin", "check_admin_login", "admin_ok"], secret=_FAKE_SECRETS,
                          param=["password", "passwd", "pwd"]))
    return _piece(
        n, "Check whether the password typed on the admin page of $app is the right one.",
        ["import hmac", "import os"],
        '''
def $fn($param: str) -> bool:
    @@HOLE@@
''',
        'return $param == "$secret"',
        'return hmac.compare_digest($param, os.environ["ADMIN_PASSWORD"])')


def _cred_token(rng, d):
    n = dict(d, **_choose(rng, fn=[f"fetch_{d['items']}", "pull_updates", "sync"],
                          const=["API_TOKEN", "SERVICE_TOKEN", "ACCESS_TOKEN"],
                          secret=["tok_9f8a7b6c5d", "ghp_x1y2z3w4", "sk-demo-4455", "key_aa11bb22"]))
    return _piece(
        n, "Download the latest $items for $app from the partner API, which needs a bearer token.",
        ["import os", "import requests"],
        '''
@@HOLE@@


def $fn():
    headers = {"Authorization": f"Bearer {$const}"}
    response = requests.get("https://api.example.com/$items", headers=headers, timeout=10)
    return response.json()
''',
        '$const = "$secret"', '$const = os.environ["$const"]')


# ---- TLS certificate checks turned off ----------------------------------------------------------------
def _tls_requests(rng, d):
    n = dict(d, **_choose(rng, fn=[f"fetch_{d['item']}", "get_remote", "download_feed"],
                          host=["partner.example.com", "feeds.example.org", "inventory.example.net"]))
    return _piece(
        n, "Fetch one $item of $app as JSON from a partner service over HTTPS, given its id.",
        ["import requests"],
        '''
def $fn(item_id):
    url = f"https://$host/$items/{item_id}"
    @@HOLE@@
    return response.json()
''',
        "response = requests.get(url, timeout=10, verify=False)", "response = requests.get(url, timeout=10)")


def _tls_urllib(rng, d):
    n = dict(d, **_choose(rng, fn=["read_page", "fetch_text", "grab"],
                          param=["url", "address", "link"]))
    return _piece(
        n, "$app needs a helper that downloads the text of an HTTPS page.",
        ["import ssl", "import urllib.request"],
        '''
def $fn($param: str) -> str:
    @@HOLE@@
    with urllib.request.urlopen($param, context=context, timeout=10) as response:
        return response.read().decode("utf-8")
''',
        "context = ssl._create_unverified_context()", "context = ssl.create_default_context()")


def _tls_httpx(rng, d):
    n = dict(d, **_choose(rng, fn=[f"post_{d['item']}", "upload_record", "push"],
                          host=["hooks.example.com", "api.example.org", "sync.example.net"]))
    return _piece(
        n, "Send a new $item of $app as JSON to a remote HTTPS service and return its reply.",
        ["import httpx"],
        '''
def $fn(record: dict):
    @@HOLE@@
        reply = client.post("https://$host/$items", json=record)
    return reply.json()
''',
        "with httpx.Client(verify=False, timeout=10) as client:", "with httpx.Client(timeout=10) as client:")


# ---- eval of user input -------------------------------------------------------------------------------
def _eval_list(rng, d):
    n = dict(d, **_choose(rng, fn=["parse_ids", "read_selection", "selected_items"], param=["ids", "selection"]))
    return _piece(
        n, "A form of $app posts a list of $item ids written like [3, 7, 12]; turn it into a Python list.",
        ["import ast", "from flask import Flask, request"],
        '''
app = Flask(__name__)


@app.route("/$items/bulk", methods=["POST"])
def $fn():
    raw = request.form["$param"]
    @@HOLE@@
    return {"count": len(values)}
''',
        "values = eval(raw)", "values = ast.literal_eval(raw)")


def _eval_number(rng, d):
    n = dict(d, **_choose(rng, fn=["read_quantity", "parse_amount", "to_number"], param=["text", "raw", "value"]))
    return _piece(
        n, "Convert the quantity of $items typed into a text box of $app into a number.",
        [],
        '''
def $fn($param: str) -> float:
    @@HOLE@@
''',
        "return eval($param)", "return float($param)")


def _eval_settings(rng, d):
    n = dict(d, **_choose(rng, fn=["load_filters", "parse_options", "read_settings"], param=["text", "line"]))
    style = rng.randrange(2)
    insecure = ["return eval($param)", "options = {}\nexec(\"options = \" + $param, {}, options)\n"
                "return options[\"options\"]"][style]
    return _piece(
        n, "$app stores display filters for $items as a dictionary literal in one line of text; read it back.",
        ["import json"],
        '''
def $fn($param: str) -> dict:
    @@HOLE@@
''',
        insecure, "return json.loads($param)")


# ---- predictable temporary files ----------------------------------------------------------------------
def _tmp_report(rng, d):
    n = dict(d, **_choose(rng, fn=[f"build_{d['item']}_report", "render_report", "make_export"],
                          name=["report.csv", f"{d['items']}.csv", "export.tmp"]))
    return _piece(
        n, "Write a temporary CSV report of the $items in $app and return the path of the file.",
        ["import csv", "import tempfile"],
        '''
def $fn(rows):
    @@HOLE@@
        writer = csv.writer(handle)
        writer.writerows(rows)
    return path
''',
        'path = "/tmp/$name"\nwith open(path, "w", newline="") as handle:',
        'with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False, newline="") as handle:\n'
        "    path = handle.name")


def _tmp_mktemp(rng, d):
    n = dict(d, **_choose(rng, fn=["stage_upload", "buffer_upload", "spool"], param=["data", "content", "chunk"]))
    return _piece(
        n, "Store an uploaded $item for $app in a scratch file before it is processed; return the file name.",
        ["import os", "import tempfile"],
        '''
def $fn($param: bytes) -> str:
    @@HOLE@@
    return name
''',
        'name = tempfile.mktemp(suffix=".upload")\nwith open(name, "wb") as handle:\n    handle.write($param)',
        'descriptor, name = tempfile.mkstemp(suffix=".upload")\nwith os.fdopen(descriptor, "wb") as handle:\n'
        "    handle.write($param)")


def _tmp_user(rng, d):
    n = dict(d, **_choose(rng, fn=["draft_path", "save_draft", "scratch_copy"], param=["user_id", "owner_id"]))
    return _piece(
        n, "Save an unfinished $item draft of a user of $app to a scratch file and return where it is.",
        ["import os", "import tempfile"],
        '''
def $fn($param: int, text: str) -> str:
    @@HOLE@@
    return path
''',
        'path = f"/tmp/draft_{$param}.txt"\nwith open(path, "w") as handle:\n    handle.write(text)',
        'descriptor, path = tempfile.mkstemp(prefix=f"draft_{$param}_", suffix=".txt")\n'
        'with os.fdopen(descriptor, "w") as handle:\n    handle.write(text)')


# ---- weak password hashing ----------------------------------------------------------------------------
def _hash_store(rng, d):
    n = dict(d, **_choose(rng, fn=["hash_password", "password_digest", "store_password"],
                          algo=["md5", "sha1"]))
    return _piece(
        n, "Turn a new member's password for $app into the string kept in the users table.",
        ["import hashlib", "import os"],
        '''
def $fn(password: str) -> str:
    @@HOLE@@
''',
        "return hashlib.$algo(password.encode()).hexdigest()",
        "salt = os.urandom(16)\n"
        'digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 200_000)\n'
        "return salt.hex() + \":\" + digest.hex()")


def _hash_check(rng, d):
    n = dict(d, **_choose(rng, fn=["check_password", "password_matches", "verify_login"], algo=["md5", "sha1"]))
    return _piece(
        n, "Compare a login attempt on $app with the stored password record of the member.",
        ["import hashlib", "import hmac"],
        '''
def $fn(attempt: str, stored: str) -> bool:
    @@HOLE@@
''',
        "return hashlib.$algo(attempt.encode()).hexdigest() == stored",
        'salt_hex, digest_hex = stored.split(":")\n'
        'digest = hashlib.pbkdf2_hmac("sha256", attempt.encode(), bytes.fromhex(salt_hex), 200_000)\n'
        "return hmac.compare_digest(digest.hex(), digest_hex)")


# ---- guessable random tokens --------------------------------------------------------------------------
def _rand_reset(rng, d):
    n = dict(d, **_choose(rng, fn=["reset_code", "new_reset_link", "make_reset_code"], length=["16", "20", "32"]))
    return _piece(
        n, "Create the one-time code that $app puts in a password reset e-mail.",
        ["import random", "import secrets", "import string"],
        '''
ALPHABET = string.ascii_letters + string.digits


def $fn() -> str:
    @@HOLE@@
''',
        'return "".join(random.choice(ALPHABET) for _ in range($length))',
        'return "".join(secrets.choice(ALPHABET) for _ in range($length))')


def _rand_session(rng, d):
    n = dict(d, **_choose(rng, fn=["new_session_id", "session_key", "issue_session"]))
    style = rng.randrange(2)
    insecure = ['return "%032x" % random.getrandbits(128)', 'return str(random.randint(10**15, 10**16))'][style]
    return _piece(
        n, "Make a fresh session identifier for a member who logs in to $app.",
        ["import random", "import secrets"],
        '''
def $fn() -> str:
    @@HOLE@@
''',
        insecure, "return secrets.token_hex(16)")


def _rand_invite(rng, d):
    n = dict(d, **_choose(rng, fn=["invite_code", "make_invite", "new_invitation"], size=["8", "10", "12"]))
    return _piece(
        n, "Generate an invitation code that lets a new member join $app.",
        ["import random", "import secrets", "import string"],
        '''
def $fn() -> str:
    letters = string.ascii_uppercase + string.digits
    @@HOLE@@
''',
        'return "".join(random.choices(letters, k=$size))',
        'return "".join(secrets.choice(letters) for _ in range($size))')


FAMILIES: dict[str, list[Callable]] = {
    "path_traversal": [_path_download, _path_read, _path_extract, _path_delete],
    "sql_string_formatting": [_sql_lookup, _sql_insert, _sql_delete, _sql_update],
    "shell_injection": [_shell_ping, _shell_archive, _shell_convert, _shell_lines],
    "world_writable_permissions": [_perm_log, _perm_export, _perm_dir],
    "unsafe_deserialization": [_deser_cookie, _deser_yaml, _deser_cache],
    "html_without_escaping": [_html_greeting, _html_list, _html_jinja, _html_search],
    "hardcoded_credentials": [_cred_db, _cred_mail, _cred_admin, _cred_token],
    "tls_verification_disabled": [_tls_requests, _tls_urllib, _tls_httpx],
    "eval_of_input": [_eval_list, _eval_number, _eval_settings],
    "predictable_temp_file": [_tmp_report, _tmp_mktemp, _tmp_user],
    "weak_password_hash": [_hash_store, _hash_check],
    "guessable_random_token": [_rand_reset, _rand_session, _rand_invite],
}
