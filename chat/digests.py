"""Email digests: DMs and mentions an account has not read within CHAT_EMAIL_DELAY_SECS.

When a message (or an edit) that notifies an account commits, `schedule` runs in the same
transaction: for an account with an email address and notifications on, and no digest job
queued yet, it marks one as due (`EmailSettings.due_at`) and enqueues `chat.tasks.send_digest`
to run after the delay. Later messages find the job queued and add nothing, so several
messages become one email. The public-room send path (no mention, not a DM) never gets here.

The job (`send_digest`) reads what the account still has unread at that moment and has not
been emailed about (`RoomMember.emailed_through`): read in any tab, on any node, before the
delay, and there is nothing to send. It writes the email (`EmailDigest`) and moves the marks
in one transaction, then sends it; a retry sends a written, unsent digest rather than writing
a second one. Sending is claimed per digest (`claimed_at`), so two jobs never send the same
one; a worker killed mid-SMTP leaves the claim to expire after CHAT_JOB_LEASE_SECS. The one
window left is a crash between the SMTP server's acceptance and the `sent_at` commit: the
retry re-sends with the same Message-ID, which mail systems use to drop the copy.
"""
import datetime
import logging

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMessage
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from chat import jobs, permissions
from chat.models import DIRECT, EmailDigest, EmailSettings, Mention, Message, RoomMember
from chat.protocol import ProtocolError

log = logging.getLogger("chat.digests")

STALE_DUE_SECS = 3600  # a digest due this long ago whose job never cleared it: schedule anew
EXCERPT_CHARS = 300
SEND_BATCH = 5  # unsent digests one job sends at most (normally one)


# -- in the committing transaction ---------------------------------------------------------------
def direct_members(room_id):
    """The members of a direct room: a message there notifies all but its author."""
    return frozenset(RoomMember.objects.filter(room_id=room_id).values_list("user_id", flat=True))


def schedule(user_ids):
    """Queue one digest job per account among `user_ids` that wants email and has none queued."""
    if not user_ids:
        return []
    from chat import tasks

    now = timezone.now()
    free = Q(email_settings__isnull=True) | Q(email_settings__notify=True, email_settings__due_at__isnull=True) | Q(
        email_settings__notify=True, email_settings__due_at__lt=now - datetime.timedelta(seconds=STALE_DUE_SECS))
    wanted = list(get_user_model()._default_manager.filter(free, pk__in=user_ids, is_active=True).exclude(email="")
                  .values_list("pk", flat=True))
    if not wanted:
        return []
    EmailSettings.objects.bulk_create([EmailSettings(user_id=pk) for pk in wanted], ignore_conflicts=True)
    due = now + datetime.timedelta(seconds=settings.CHAT_EMAIL_DELAY_SECS)
    queued = []
    for pk in sorted(wanted):
        stale = Q(due_at__isnull=True) | Q(due_at__lt=now - datetime.timedelta(seconds=STALE_DUE_SECS))
        if EmailSettings.objects.filter(stale, user_id=pk, notify=True).update(due_at=due):
            jobs.enqueue(tasks.send_digest, pk, delay_secs=settings.CHAT_EMAIL_DELAY_SECS)
            queued.append(pk)
    return queued


# -- the job ---------------------------------------------------------------------------------------
def send_digest(user_id):
    """Write the account's digest of what is unread and not yet emailed, then send every
    unsent digest of it. Returns how many emails went out (idempotent: a re-run sends none)."""
    write_digest(user_id)
    sent = 0
    for digest_id in EmailDigest.objects.filter(user_id=user_id, sent_at__isnull=True).order_by("pk") \
            .values_list("pk", flat=True)[:SEND_BATCH]:
        sent += send_one(digest_id)
    return sent


def write_digest(user_id):
    with transaction.atomic():
        EmailSettings.objects.filter(user_id=user_id).update(due_at=None)  # later messages queue a new job
        user = get_user_model()._default_manager.filter(pk=user_id, is_active=True).first()
        wants = EmailSettings.objects.filter(user_id=user_id, notify=True).exists()
        if user is None or not user.email or not wants:
            return None
        rooms = unread_for(user_id, user.get_username())
        if not rooms:
            return None
        for member, _, _ in rooms:
            RoomMember.objects.filter(pk=member.pk).update(emailed_through=member.room.last_seq)
        subject, body = compose(user, rooms)
        return EmailDigest.objects.create(user_id=user_id, to_email=user.email, subject=subject, body=body)


def unread_for(user_id, username):
    """[(membership, messages, more)] of the rooms with DMs or mentions that are unread and
    not yet emailed; at most CHAT_EMAIL_DIGEST_MAX messages in all, `more` counts the rest.
    Only rooms the account may read now: the page's rooms pass THE read rule
    (chat.permissions.rooms_access), so a ban since the mention keeps its text out."""
    members = list(RoomMember.objects.filter(user_id=user_id, room__archived_at__isnull=True)
                   .filter(Q(room__kind=DIRECT, muted=False, room__message_count__gt=F("read_count"))
                           | Q(mentions__gt=0))
                   .filter(room__last_seq__gt=F("emailed_through")).select_related("room")
                   .order_by("room__name")[:settings.CHAT_EMAIL_DIGEST_MAX])
    access = permissions.rooms_access([m.room.name for m in members], username, user_id)
    budget, found = settings.CHAT_EMAIL_DIGEST_MAX, []
    for member in members:
        if isinstance(access[member.room.name], ProtocolError):
            continue
        messages = _new_messages(member, user_id)
        if messages:
            shown = messages[:max(budget, 0)]
            budget -= len(shown)
            found.append((member, shown, len(messages) - len(shown)))
    return found


def _new_messages(member, user_id):
    after = max(member.last_read, member.emailed_through)
    rows = Message.objects.filter(room_id=member.room_id, seq__gt=after, deleted_at__isnull=True).exclude(
        user_id=user_id)
    if member.room.kind != DIRECT or member.muted:
        mentioned = Mention.objects.filter(Q(user_id=user_id) | Q(user__isnull=True), room_id=member.room_id,
                                           seq__gt=after).values("seq")
        rows = rows.filter(seq__in=mentioned)
    return list(rows.order_by("seq").values("seq", "author", "text")[:settings.CHAT_EMAIL_DIGEST_MAX + 1])


def compose(user, rooms):
    count = sum(len(messages) + more for _, messages, more in rooms)
    subject = f"{count} unread message{'s' if count != 1 else ''} for you on Chat"
    lines = [f"Hello {user.get_username()},", "", "You have messages you have not read yet:", ""]
    for member, messages, more in rooms:
        room = member.room
        where = f"Direct messages with {room.title}" if room.kind == DIRECT else f"Mentions in {room.name}"
        lines += [f"{where}: {settings.CHAT_SITE_URL}/r/{room.name}/", ""]
        lines += [f"  {m['author']}: {_excerpt(m['text'])}" for m in messages]
        if more:
            lines.append(f"  ... and {more} more")
        lines.append("")
    lines += ["--", f"Email settings: {settings.CHAT_SITE_URL}/accounts/settings/"]
    return subject, "\n".join(lines)


def _excerpt(text):
    text = " ".join(text.split())
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS - 1] + "…"


def send_one(digest_id):
    """Claim, send and mark one digest; 0 when it is sent or claimed by a live job."""
    from chat.emailprefs import unsubscribe_url

    now = timezone.now()
    lease = now - datetime.timedelta(seconds=settings.CHAT_JOB_LEASE_SECS)
    claimed = EmailDigest.objects.filter(Q(claimed_at__isnull=True) | Q(claimed_at__lt=lease), pk=digest_id,
                                         sent_at__isnull=True).update(claimed_at=now)
    if not claimed:
        return 0
    digest = EmailDigest.objects.get(pk=digest_id)
    link = unsubscribe_url(digest.user_id)
    body = f"{digest.body}\nUnsubscribe with one click: {link}\n"
    domain = settings.DEFAULT_FROM_EMAIL.rpartition("@")[2] or "localhost"
    headers = {"List-Unsubscribe": f"<{link}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
               "Message-ID": f"<digest-{digest.pk}-{digest.user_id}@{domain}>", "Auto-Submitted": "auto-generated"}
    try:
        EmailMessage(digest.subject, body, settings.DEFAULT_FROM_EMAIL, [digest.to_email], headers=headers).send()
    except Exception:
        EmailDigest.objects.filter(pk=digest_id).update(claimed_at=None)  # the job's retry sends it
        raise
    EmailDigest.objects.filter(pk=digest_id).update(sent_at=timezone.now())
    log.info("sent digest %s to user %s", digest.pk, digest.user_id)
    return 1


def prune():
    """Sent digests go after CHAT_EMAIL_KEEP_SECS."""
    cutoff = timezone.now() - datetime.timedelta(seconds=settings.CHAT_EMAIL_KEEP_SECS)
    return EmailDigest.objects.filter(sent_at__lt=cutoff).delete()[0]
