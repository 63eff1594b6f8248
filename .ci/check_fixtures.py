#!/usr/bin/env python3
"""Runs the shipped Zendesk and Intercom pipelines over ../shared/fixtures (real API records
recorded by other projects) against the embedded emulator, with 5% server errors, 2% resets
and 1% lost answers, and checks that every record there was read, that nothing went to the
dead-letter file except for a stated reason, and, from the emulator's stats, that no message
was created out of its thread's order, no contact twice and no customer notified.

    python3 .ci/check_fixtures.py BINARY FIXTURES_DIR

The fixture files keep their recorders' names (VCR cassettes, test data), so they are first
linked into one dump folder per helpdesk under the names the pipelines look for, as a user
would name an export. The expected counts are computed here from the raw JSON, independently
of the sources under test. Exits non-zero, saying why, on any miss.
"""

import collections
import json
import os
import re
import subprocess
import sys
import tempfile

# fixture file -> name in the dump folder the pipeline reads (None: not a dump file)
ZENDESK_FILES = {
    "go-zendesk/users.json": "users-go.json",
    "go-zendesk/user.json": "users-go-one.json",
    "zendesk_api_client_rb/should_be_findable.000.GET.api_v2_users.json": "users-rb.json",
    "zendesk_api_client_rb/should_be_findable.001.GET.api_v2_users_20014192.json": "users-rb-one.json",
    "go-zendesk/tickets.json": "tickets-go.json",
    "go-zendesk/ticket.json": "tickets-go-one.json",
    "zendesk_api_client_rb/should_be_findable.000.GET.api_v2_tickets.json": "tickets-rb.json",
    "zendesk_api_client_rb/should_be_findable.001.GET.api_v2_tickets_1.json": "tickets-rb-1.json",
    "zendesk_api_client_rb/ticket_inline_uploads.002.POST.api_v2_tickets.json": "tickets-rb-inline-images.json",
    "zendesk_api_client_rb/incremental_export.000.GET.api_v2_exports_tickets.json": "tickets-rb-legacy-export.json",
    # A comments page of an unnamed ticket: its comments cannot be placed (a stated reason).
    "go-zendesk/ticket_comments.json": "comments-go.json",
    "go-zendesk/ticket_audits.json": "audits-go.json",
    "zendesk_api_client_rb/should_side-load_events.000.GET.api_v2_tickets_1_audits.json": "audits-rb-1.json",
    # Answers to file uploads: upload tokens, not helpdesk records.
    "zendesk_api_client_rb/ticket_inline_uploads.000.POST.api_v2_uploads.json": None,
    "zendesk_api_client_rb/ticket_inline_uploads.001.POST.api_v2_uploads.json": None,
}

INTERCOM_FILES = {
    "openapi-2.15/GET_contacts.successful.json": "contacts-openapi-list.json",
    "openapi-2.15/GET_contacts_contact_id.successful.json": "contacts-openapi-one.json",
    "openapi-2.15/POST_contacts_search.successful.json": "contacts-openapi-search.json",
    "openapi-2.15/GET_conversations.successful.json": "conversations-openapi-list.json",
    "openapi-2.15/GET_conversations_conversation_id.conversation_found.json": "conversations-openapi-one.json",
    "openapi-2.15/POST_conversations_search.successful.json": "conversations-openapi-search.json",
    "api-1.x/contacts.json": "contacts-v1-list.json",
    "api-1.x/contact.json": "contacts-v1-one.json",
    "api-1.x/conversations.json": "conversations-v1-list.json",
    "api-1.x/conversation.json": "conversations-v1-one.json",
    # One Airbyte sync holds every stream: contacts, conversations and conversation_parts.
    "airbyte/expected_records.jsonl": ["contacts-airbyte.jsonl", "conversations-airbyte.jsonl"],
}

# The emulator's faults: 5% server errors, 2% resets, 1% lost answers.
FAULTS = os.environ.get("FIXTURE_FAULTS", "0.05,0.02,0.01")

# Dead letters accepted, by stream: the reason must match one of these.
ZENDESK_REASONS = {
    "comments": [
        r"a comment without its ticket",  # go-zendesk's comments page names no ticket
        r"`ticket` names .* of stream `tickets`, which has no Gleap id",  # ticket not in the dump
    ],
}
INTERCOM_REASONS = {
    "parts": [
        r"`ticket` names .* of stream `conversations`, which has no Gleap id",  # conversation not in the dump
        # A customer's message whose contact is not in the dump: sending it as an agent's
        # would misattribute it, so it waits for its contact (add it and run again).
        r"`session` names .* of stream `contacts`, which has no Gleap id",
    ],
}


def documents(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        return [json.loads(text)]
    except json.JSONDecodeError:
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def as_list(value):
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        return [value]
    return []


def zendesk_expected(root):
    """Records per stream, counted from the raw files the way Zendesk documents them."""
    users = tickets = comments = 0
    for fixture, name in ZENDESK_FILES.items():
        if name is None:
            continue
        for doc in documents(os.path.join(root, fixture)):
            if name.startswith("users"):
                users += len(as_list(doc.get("users"))) + len(as_list(doc.get("user")))
            if name.startswith("tickets"):
                tickets += len(as_list(doc.get("tickets"))) + len(as_list(doc.get("ticket")))
                tickets += len(doc.get("results", []))  # legacy export rows
            # The comments stream reads comments*, audits* and tickets* (audits of created tickets).
            comments += len(as_list(doc.get("comments")))
            for audit in as_list(doc.get("audits")) + as_list(doc.get("audit")):
                comments += sum(1 for e in audit.get("events", []) if e.get("type") == "Comment")
    return {"users": users, "tickets": tickets, "comments": comments}


def intercom_expected(root):
    contacts = conversations = parts = 0
    for fixture, names in INTERCOM_FILES.items():
        for doc in documents(os.path.join(root, fixture)):
            if "stream" in doc and "emitted_at" in doc:  # Airbyte record
                stream = doc["stream"]
                contacts += stream == "contacts"
                conversations += stream == "conversations"
                parts += stream == "conversation_parts"
                if stream == "conversations":
                    parts += conversation_parts(doc["data"])
                continue
            kind = doc.get("type", "")
            if kind in ("contact", "user", "lead"):
                contacts += 1
            elif kind in ("list", "contact.list", "user.list") and not doc.get("conversations"):
                contacts += len(doc.get("data", doc.get("contacts", doc.get("users", []))))
            elif kind == "conversation":
                conversations += 1
                parts += conversation_parts(doc)
            elif kind in ("conversation.list", "list"):
                for c in doc.get("conversations", []):
                    conversations += 1
                    parts += conversation_parts(c)
    return {"contacts": contacts, "conversations": conversations, "parts": parts}


def conversation_parts(conversation):
    """The opening message plus the listed parts."""
    opening = 1 if (conversation.get("source") or conversation.get("conversation_message")) else 0
    listed = conversation.get("conversation_parts") or {}
    listed = listed.get("conversation_parts", []) if isinstance(listed, dict) else listed
    return opening + len(listed)


def stage(root, files, dump):
    os.makedirs(dump)
    for fixture, names in files.items():
        for name in [names] if isinstance(names, str) else (names or []):
            os.symlink(os.path.abspath(os.path.join(root, fixture)), os.path.join(dump, name))


def run(binary, pipeline, dir_var, dump, state, expected, reasons):
    report_path = os.path.join(state, "report.json")
    env = dict(os.environ, **{dir_var: dump, "STATE_DIR": state, "GLEAP_REQUESTS_PER_MINUTE": "600000"})
    cmd = [binary, "run", pipeline, "--emulator", "--emulator-quota", "unlimited", "--no-progress",
           "--emulator-faults", FAULTS, "--report", report_path]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    sys.stdout.write(done.stderr)
    if done.returncode not in (0, 1):
        fail(f"{pipeline}: exit {done.returncode}")
    with open(report_path) as f:
        report = json.load(f)
    problems = []
    for stream in report["streams"]:
        name = stream["name"]
        want = expected[name]
        print(f"  {name}: {stream['read']} read of {want} records in the fixtures "
              f"({stream['source_rejected']} unreadable, {stream['filtered']} filtered, "
              f"{stream['written']} written, {stream['dead_lettered']} dead-lettered)")
        if stream["read"] != want:
            problems.append(f"{name}: read {stream['read']}, the fixtures hold {want}")
    stats = report.get("emulator") or {}
    out_of_order = stats.get("messages_out_of_order")
    shared = (stats.get("sessions_sharing_a_user_id") or {}).get("user_ids")
    faults = stats.get("faults", {})
    print(f"  emulator: {sum(faults.values())} faults ({faults}), {out_of_order} messages out of "
          f"thread order, {shared} userIds on several sessions, "
          f"{stats.get('customer_notifications')} customer notifications")
    if out_of_order != 0:
        problems.append(f"{out_of_order} messages created out of their thread's order: {stats.get('tickets_out_of_order')}")
    if shared != 0:
        problems.append(f"{shared} userIds held by several sessions")
    if stats.get("customer_notifications") != 0:
        problems.append("a request would have notified a customer")
    dead = os.path.join(state, "dead-letter.jsonl")
    by_reason = collections.Counter()
    if os.path.exists(dead):
        with open(dead) as f:
            for line in f:
                letter = json.loads(line)
                reason = letter["reason"]
                allowed = reasons.get(letter["stream"], [])
                if not any(re.search(r, reason) for r in allowed):
                    problems.append(f"dead letter without a stated reason: {letter['stream']} "
                                    f"{letter.get('file')}:{letter.get('line')}: {reason}")
                by_reason[(letter["stream"], re.sub(r'"[^"]*"', '"…"', reason))] += 1
    for (stream, reason), n in sorted(by_reason.items()):
        print(f"  dead letters, {stream}: {n} x {reason}")
    if problems:
        fail("\n".join(problems))


def fail(message):
    print(f"fixture check failed:\n{message}", file=sys.stderr)
    sys.exit(1)


def main():
    binary, fixtures = sys.argv[1], sys.argv[2]
    work = tempfile.mkdtemp(prefix="gleap-etl-fixtures-")
    for system, files, pipeline, dir_var, expected_of, reasons in [
        ("zendesk", ZENDESK_FILES, "pipelines/zendesk_to_gleap.yaml", "ZENDESK_DIR", zendesk_expected, ZENDESK_REASONS),
        ("intercom", INTERCOM_FILES, "pipelines/intercom_to_gleap.yaml", "INTERCOM_DIR", intercom_expected, INTERCOM_REASONS),
    ]:
        root = os.path.join(fixtures, system)
        present = {os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs}
        unknown = present - set(files)
        if unknown:
            fail(f"{system}: fixture files this check does not know: {sorted(unknown)}")
        dump = os.path.join(work, system, "dump")
        stage(root, files, dump)
        print(f"{system}: {len(files)} fixture files as {dump}")
        run(binary, pipeline, dir_var, dump, os.path.join(work, system, "state"), expected_of(root), reasons)
    print("fixtures ok: every record read, dead letters only for stated reasons")


if __name__ == "__main__":
    main()
