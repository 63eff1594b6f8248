#!/usr/bin/env python3
"""Writes samples/zendesk and samples/intercom: small helpdesk dumps in the shapes the real
APIs and exports use, with the awkward parts real dumps have (unicode, HTML, nulls, empty
emails, attachments and inline images, private notes, deleted tickets, bots, event parts,
a message of files alone and an empty one, tags and companies listed by id, organizations,
an assignee who is not a Gleap team member, gzip, JSON lines, Airbyte records, legacy
Intercom 1.x).

Deterministic: the same files every time.

    python3 scripts/gen_helpdesk_samples.py
"""
import gzip
import json
import os
import random

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "samples")
rng = random.Random(5)


def write(path, value, lines=False, gz=False):
    path = os.path.join(ROOT, path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if lines:
        text = "".join(json.dumps(v, ensure_ascii=False) + "\n" for v in value)
    else:
        text = json.dumps(value, ensure_ascii=False, indent=2) + "\n"
    data = text.encode("utf-8")
    if gz:
        with gzip.GzipFile(path, "wb", mtime=0) as f:
            f.write(data)
    else:
        with open(path, "wb") as f:
            f.write(data)


def iso(day, hour=9, minute=0):
    return f"2024-03-{day:02d}T{hour:02d}:{minute:02d}:00Z"


# ---------------------------------------------------------------- Zendesk
NAMES = ["Zoë Ångström", "李雷", "Søren Kierkegaard", "Ana María Núñez", "Mehmet Öztürk", "Ólafur Arnalds",
         "Priya Raman 🚀", "Jean-Luc Picard", "Amara Okafor", "Kenji Watanabe", "Fatima Zahra", "Lars Nilsson",
         "Chloé Dubois", "Mateo García"]


def zd_user(i, role="end-user", email=True, external=None):
    uid = 900000000000 + i
    return {
        "id": uid, "url": f"https://acme.zendesk.com/api/v2/users/{uid}.json", "name": NAMES[i % len(NAMES)],
        "email": (f"user{i}@example.com" if email is True else email), "created_at": iso(1 + i % 9),
        "updated_at": iso(10 + i % 9), "time_zone": "Europe/Berlin", "phone": None if i % 3 else f"+49 30 {1000 + i}",
        "locale": "en-US", "organization_id": None, "role": role, "verified": True, "external_id": external,
        "tags": ["vip"] if i % 4 == 0 else [], "active": True, "suspended": False, "notes": None,
        "user_fields": {"plan": ["free", "pro", "team"][i % 3]},
    }


agents = [zd_user(0, "admin", email="owner@acme.example", external=None), zd_user(1, "agent", email="sam@acme.example")]
agents[0]["name"] = "Olivia Owner"
agents[1]["name"] = "Sam Support"
end_users = [zd_user(i, external=(f"crm-{i}" if i % 2 == 0 else None)) for i in range(2, 12)]
ORGANIZATIONS = [
    {"url": "https://acme.zendesk.com/api/v2/organizations/361000000001.json", "id": 361000000001, "name": "Globex Corporation",
     "shared_tickets": False, "shared_comments": False, "external_id": "crm-org-1", "created_at": "2024-02-01T09:00:00Z",
     "updated_at": "2024-03-01T09:00:00Z", "domain_names": ["globex.example"], "details": "", "notes": "", "group_id": None,
     "tags": ["enterprise"], "organization_fields": {"tier": "gold"}},
    {"url": "https://acme.zendesk.com/api/v2/organizations/361000000002.json", "id": 361000000002, "name": "Initech",
     "shared_tickets": False, "shared_comments": False, "external_id": None, "created_at": "2024-02-05T09:00:00Z",
     "updated_at": "2024-03-05T09:00:00Z", "domain_names": [], "details": "", "notes": "", "group_id": None,
     "tags": [], "organization_fields": {}},
]
for u, org in zip(end_users[:3], (0, 0, 1)):
    u["organization_id"] = ORGANIZATIONS[org]["id"]
write("zendesk/organizations.json", {"organizations": ORGANIZATIONS, "next_page": None, "previous_page": None, "count": len(ORGANIZATIONS)})
end_users[1]["email"] = ""      # an empty email
end_users[2]["email"] = None    # no email
export_users = [zd_user(i, external=f"crm-{i}") for i in range(12, 16)]
write("zendesk/users.json", {"users": agents + end_users, "next_page": None, "previous_page": None, "count": len(agents) + len(end_users)})
write("zendesk/users-export.jsonl.gz", export_users, lines=True, gz=True)
customers = end_users + export_users

STATUSES = ["new", "open", "pending", "hold", "solved", "closed", "open", "deleted", "open", "solved"]
TYPES = ["problem", "incident", "question", "task", None, "question", "problem", "question", "incident", "question"]
PRIOS = ["low", "normal", "high", "urgent", None, "normal", "high", "low", "normal", "urgent"]
SUBJECTS = ["Login button does nothing on iOS", "Rechnung zeigt falsche MwSt.", "Export to CSV fails", "Dark mode for the widget?",
            "Emails arrive twice", "Le tableau de bord est lent", "SSO with Okta fails", "Test ticket, please delete",
            "Attachment upload fails over 10 MB", "Search ignores accents (é, ü)"]


def zd_ticket(n):
    tid = 1001 + n
    requester = customers[(n * 3) % len(customers)]
    tags = ["mobile", "ios"] if n % 2 == 0 else ["billing"]
    if n == 3:
        tags = ["feature_request", "widget"]
    return {
        "url": f"https://acme.zendesk.com/api/v2/tickets/{tid}.json", "id": tid, "external_id": None,
        "via": {"channel": ["web", "email", "api"][n % 3], "source": {"from": {}, "to": {}, "rel": None}},
        "created_at": iso(1 + n, 8), "updated_at": iso(2 + n, 17), "type": TYPES[n], "subject": SUBJECTS[n],
        "raw_subject": SUBJECTS[n], "description": f"First message of ticket {tid}.", "priority": PRIOS[n],
        "status": STATUSES[n], "requester_id": requester["id"], "submitter_id": requester["id"],
        "assignee_id": agents[1]["id"], "organization_id": None, "group_id": 360001, "collaborator_ids": [],
        "tags": tags, "custom_fields": [{"id": 360100, "value": None}], "satisfaction_rating": None, "brand_id": 1,
    }


tickets = [zd_ticket(n) for n in range(10)]
tickets[6]["assignee_id"] = agents[0]["id"]  # Olivia, who is not in the Gleap team
HTML_REPLIES = [
    "<div class=\"zd-comment\"><p>Thanks for reaching out! We're <strong>looking into it</strong>.</p></div>",
    "<div class=\"zd-comment\"><p>Could you try these steps?</p><ol><li>Log out</li><li>Clear the cache</li><li>Log in again</li></ol></div>",
    "<div class=\"zd-comment\"><p>Fixed in <a href=\"https://status.acme.example/2.3.2\">2.3.2</a> &mdash; please update.</p><p>Screenshot: <img src=\"https://acme.zendesk.com/attachments/token/abc/?name=fix.png\" alt=\"fix.png\"></p></div>",
    "<div class=\"zd-comment\"><blockquote>It still fails</blockquote><p>We've escalated this.<br>Best,<br><em>Sam</em></p></div>",
]
CUSTOMER_REPLIES = ["Hi, it still happens after the update 😕", "Danke, jetzt geht es!", "Merci beaucoup !", "Here is the log:\nERROR 42\nERROR 43"]
NOTES = ["<p>Internal: customer is on the <b>enterprise</b> plan.</p>", "<p>Duplicate of #1004? Checking.</p>"]
comment_id = [500000]


def zd_comment(ticket, author, public, html=None, body=None, attachments=()):
    comment_id[0] += 1
    return {
        "id": comment_id[0], "type": "Comment", "author_id": author["id"], "body": body or "",
        "html_body": html if html is not None else "", "plain_body": body or "", "public": public,
        "attachments": [{"url": f"https://acme.zendesk.com/api/v2/attachments/{comment_id[0]}{k}.json", "id": comment_id[0] * 10 + k,
                         "file_name": name, "content_url": f"https://acme.zendesk.com/attachments/token/t{comment_id[0]}{k}/?name={name}",
                         "content_type": kind, "size": 2048, "inline": False} for k, (name, kind) in enumerate(attachments)],
        "created_at": iso(3 + ticket["id"] % 20, 10 + len(CUSTOMER_REPLIES) % 3),
    }


def conversation(ticket, n):
    requester = next(u for u in customers if u["id"] == ticket["requester_id"])
    out = [zd_comment(ticket, requester, True, html=f"<p>{ticket['description']}</p>", body=ticket["description"])]
    for k in range(n):
        if k % 3 == 0:
            out.append(zd_comment(ticket, agents[1], True, html=HTML_REPLIES[(ticket["id"] + k) % 4],
                                  attachments=[("report.pdf", "application/pdf")] if k == 3 else ()))
        elif k % 3 == 1:
            text = CUSTOMER_REPLIES[(ticket["id"] + k) % 4]
            out.append(zd_comment(ticket, requester, True, body=text,
                                  attachments=[("screen.png", "image/png")] if k == 1 else ()))
        else:
            out.append(zd_comment(ticket, agents[(ticket["id"] + k) % 2], False, html=NOTES[k % 2]))
    return out


# Audits for the first six tickets (one audit per comment), ticket events for two, a
# comments page named after its ticket for one, nested comments in export lines for three.
audits = []
for t in tickets[:6]:
    for c in conversation(t, 4 if t["id"] % 2 else 3):
        audits.append({"id": c["id"] + 7000000, "ticket_id": t["id"], "created_at": c["created_at"], "author_id": c["author_id"],
                       "via": {"channel": "web"}, "metadata": {"system": {}, "custom": {}},
                       "events": [dict(c, author_id=c["author_id"]),
                                  {"id": c["id"] + 8000000, "type": "Change", "field_name": "status", "value": "open", "previous_value": "new"}]})
write("zendesk/audits.json", {"audits": audits, "users": agents[:1], "next_page": None, "previous_page": None, "count": len(audits)})
events = []
for t in tickets[6:8]:
    for c in conversation(t, 2):
        events.append({"id": c["id"] + 9000000, "ticket_id": t["id"], "timestamp": 1709280000 + c["id"] % 1000, "updater_id": c["author_id"],
                       "via": "Web form", "event_type": "Audit",
                       "child_events": [dict(c, event_type="Comment"), {"id": c["id"] + 9500000, "event_type": "Change", "status": "open"}]})
write("zendesk/ticket_events.json", {"ticket_events": events, "next_page": None, "count": len(events), "end_of_stream": True})
page_comments = conversation(tickets[8], 2)
# A customer's comment of a file alone (no text); its id is set so that no other id moves.
files_only = dict(page_comments[-1], id=599001, body="", html_body="", plain_body="", created_at="2024-03-12T15:00:00Z",
                  author_id=tickets[8]["requester_id"], public=True)
files_only["attachments"] = [{"url": "https://acme.zendesk.com/api/v2/attachments/5990010.json", "id": 5990010,
                              "file_name": "crash-log.txt", "content_url": "https://acme.zendesk.com/attachments/token/t5990010/?name=crash-log.txt",
                              "content_type": "text/plain", "size": 812, "inline": False}]
page_comments.append(files_only)
write(f"zendesk/comments-{tickets[8]['id']}.json", {"comments": page_comments, "meta": {"has_more": False}})
write("zendesk/tickets.json", {"tickets": tickets[:9], "next_page": None, "previous_page": None, "count": 9})
export_lines = []
for n in (9, 10, 11):
    t = zd_ticket(n % 10)
    t["id"] = 1001 + n
    t["subject"] = SUBJECTS[n % 10] + " (export)"
    t["status"] = "open"
    t["comments"] = conversation(t, 2)
    export_lines.append(t)
write("zendesk/tickets-export.jsonl", export_lines, lines=True)

# ---------------------------------------------------------------- Intercom
ADMINS = [{"type": "admin", "id": "814860", "name": "Sam Support", "email": "sam@acme.example"},
          {"type": "admin", "id": "814861", "name": "Olivia Owner", "email": "owner@acme.example"}]
BOT = {"type": "bot", "id": "5991", "name": "Fin", "email": "operator+acme@intercom.io"}


def ic_contact(i, role="user", email=True, external=None):
    return {
        "type": "contact", "id": f"65f1a2b3c4d5e6f7a8b9c{i:03d}", "workspace_id": "ecahpwf5", "external_id": external,
        "role": role, "email": (f"contact{i}@example.org" if email is True else email), "phone": None, "name": NAMES[i % len(NAMES)],
        "avatar": None, "owner_id": None, "social_profiles": {"type": "list", "data": []}, "has_hard_bounced": False,
        "marked_email_as_spam": False, "unsubscribed_from_emails": i % 5 == 0, "created_at": 1709200000 + i * 3600,
        "updated_at": 1709900000 + i * 60, "signed_up_at": 1709200000 + i * 3600 if role == "user" else None,
        "last_seen_at": None, "custom_attributes": {"plan": ["free", "pro"][i % 2]},
        # API 2.x contacts list tags and companies by id; tags.json and companies.json name them.
        "tags": {"type": "list", "data": [{"type": "tag", "id": "7001", "url": "/tags/7001"}] if i % 3 == 0 else [], "url": "", "total_count": 0, "has_more": False},
        "location": {"type": "location", "country": "Germany", "region": None, "city": "Berlin"},
        "companies": {"type": "list", "data": [], "url": "", "total_count": 0, "has_more": False},
    }


ic_contacts = [ic_contact(i, external=(f"crm-{i}" if i % 2 == 0 else None)) for i in range(0, 8)]
ic_contacts[1]["tags"]["data"].append({"type": "tag", "id": "7002", "url": "/tags/7002"})  # named in conversations
COMPANIES = [
    {"type": "company", "company_id": "crm-co-1", "id": "6601a0b1c2d3e4f5a6b7c801", "app_id": "ecahpwf5", "name": "Umbrella Analytics",
     "remote_created_at": 1700000000, "created_at": 1709200000, "updated_at": 1709900000, "monthly_spend": 490, "session_count": 12,
     "user_count": 2, "size": 40, "website": "https://umbrella.example", "industry": "Software",
     "plan": {"type": "plan", "id": "269315", "name": "Pro"}, "custom_attributes": {}, "tags": {"type": "tag.list", "tags": []},
     "segments": {"type": "segment.list", "segments": []}},
    {"type": "company", "company_id": "crm-co-2", "id": "6601a0b1c2d3e4f5a6b7c802", "app_id": "ecahpwf5", "name": "Hooli",
     "remote_created_at": 1700000000, "created_at": 1709200000, "updated_at": 1709900000, "monthly_spend": 0, "session_count": 3,
     "user_count": 1, "size": 5, "website": None, "industry": None, "plan": {}, "custom_attributes": {},
     "tags": {"type": "tag.list", "tags": []}, "segments": {"type": "segment.list", "segments": []}},
]
for c, company in zip(ic_contacts[:3], (0, 0, 1)):
    cid = COMPANIES[company]["id"]
    c["companies"]["data"] = [{"type": "company", "id": cid, "url": f"/companies/{cid}"}]
for c in ic_contacts:
    c["tags"]["total_count"] = len(c["tags"]["data"])
    c["companies"]["total_count"] = len(c["companies"]["data"])
write("intercom/tags.json", {"type": "list", "data": [{"type": "tag", "id": "7001", "name": "vip"}, {"type": "tag", "id": "7003", "name": "beta-tester"}]})
write("intercom/companies.json", {"type": "list", "data": COMPANIES, "pages": {"type": "pages", "page": 1, "per_page": 15, "total_pages": 1},
                                  "total_count": len(COMPANIES)})
ic_contacts += [ic_contact(i, role="lead", email=(None if i == 8 else f"lead{i}@example.org")) for i in range(8, 10)]
ic_contacts[3]["email"] = ""
write("intercom/contacts.json", {"type": "list", "data": ic_contacts[:8], "total_count": 8, "pages": {"type": "pages", "page": 1, "per_page": 50, "total_pages": 1}})
airbyte = [{"stream": "contacts", "data": c, "emitted_at": 1710000000000} for c in ic_contacts[8:]]
airbyte += [{"stream": "admins", "data": a, "emitted_at": 1710000000000} for a in ADMINS]
write("intercom/contacts-airbyte.jsonl", airbyte, lines=True)

part_id = [30000000]


def part(kind, author, body, created, attachments=()):
    part_id[0] += 1
    return {"type": "conversation_part", "id": part_id[0] if part_id[0] % 2 else str(part_id[0]), "part_type": kind,
            "body": body, "created_at": created, "updated_at": created, "notified_at": created,
            "assigned_to": None, "author": author,
            "attachments": [{"type": "upload", "name": n, "url": f"https://downloads.intercomcdn.com/i/o/{part_id[0]}/{n}", "content_type": t,
                             "filesize": 1234, "width": None, "height": None} for n, t in attachments],
            "external_id": None, "redacted": False}


def author_of(c):
    return {"id": c["id"], "type": c["role"], "name": c["name"], "email": c["email"] or ""}


CONV_TEXT = ["<p>Hi! I can't find the <b>export</b> button.</p>", "<p>My invoice is wrong 💸</p>",
             "<p>Bonjour, l'application plante au démarrage.</p>", "<p>Do you support SAML?</p>",
             "<p>Password reset email never arrives</p>", "<p>Wie kündige ich mein Abo?</p>"]
conversations = []
for n in range(6):
    contact = ic_contacts[(n * 3) % len(ic_contacts)]
    start = 1709300000 + n * 86400
    parts = [
        part("assignment", ADMINS[1], None, start + 60),
        part("comment", BOT, "<p>Hi there 👋 I'm Fin, a bot. Let me look.</p>", start + 61),
        part("comment", ADMINS[0], f"<p>Thanks! Try <a href=\"https://help.acme.example/{n}\">this article</a>.</p><ul><li>step one</li><li>step two</li></ul>", start + 300,
             attachments=[("guide.pdf", "application/pdf")] if n % 2 else ()),
        part("comment", author_of(contact), "<p>That worked, thank you!</p>" if n % 2 else "<p>Still broken:</p><p><img src=\"https://downloads.intercomcdn.com/i/o/err.png\"></p>", start + 900),
        part("note", ADMINS[1], "<p>Internal: follow up next week.</p>", start + 1000),
        part("close" if n % 3 else "open", ADMINS[0], None, start + 1200),
    ]
    if n == 0:
        # A customer's message of files alone (its body is "").
        files_only = dict(parts[3], id="30000040", body="", created_at=start + 950, updated_at=start + 950, notified_at=start + 950)
        files_only["attachments"] = [
            {"type": "upload", "name": "export-error.png", "url": "https://downloads.intercomcdn.com/i/o/1001/export-error.png",
             "content_type": "image/png", "filesize": 48213, "width": 800, "height": 600},
            {"type": "upload", "name": "export-log.pdf", "url": "https://downloads.intercomcdn.com/i/o/1002/export-log.pdf",
             "content_type": "application/pdf", "filesize": 20480, "width": None, "height": None}]
        parts.insert(4, files_only)
    if n == 1:
        # An empty, redacted reply: nothing to send.
        parts.insert(3, dict(parts[2], id=30000041, body="", created_at=start + 400, updated_at=start + 400, notified_at=start + 400,
                             attachments=[], redacted=True))
    conversations.append({
        "type": "conversation", "id": str(1911149811 + n), "created_at": start, "updated_at": start + 1200,
        "waiting_since": None, "snoozed_until": None, "title": None if n % 2 else f"Conversation about topic {n}",
        "source": {"type": "conversation", "id": str(403918320 + n), "delivered_as": "customer_initiated", "subject": "",
                   "body": CONV_TEXT[n], "author": author_of(contact), "attachments": [], "url": None, "redacted": False},
        "contacts": {"type": "contact.list", "contacts": [{"type": "contact", "id": contact["id"], "external_id": contact["external_id"]}]},
        "first_contact_reply": None, "admin_assignee_id": 814860, "team_assignee_id": None,
        "open": n % 3 == 0, "state": ["open", "closed", "snoozed"][n % 3], "read": True,
        "tags": {"type": "tag.list", "tags": [{"type": "tag", "id": "7002", "name": "onboarding"}] if n % 2
                 else [{"type": "tag", "id": "7003"}] if n == 2 else []},  # 7003: named by tags.json
        "priority": "priority" if n == 1 else "not_priority", "custom_attributes": {"channel": "messenger"},
        "conversation_parts": {"type": "conversation_part.list", "conversation_parts": parts, "total_count": len(parts)},
    })
write("intercom/conversations.json", {"type": "conversation.list", "pages": {"type": "pages", "page": 1, "per_page": 20, "total_pages": 1},
                                      "total_count": len(conversations), "conversations": conversations[:5]})
write("intercom/conversations-2.json.gz", conversations[5], gz=True)
print("samples written to", os.path.normpath(ROOT))
