"""The account's email settings page and the one-click unsubscribe link of every digest.

Unsubscribe links are signed with Django's signing (SECRET_KEY, a salt of their own) and
carry only the account id: no login is needed to use one, and no one can forge another's.
GET shows a confirmation button (link scanners that follow URLs change nothing); POST
turns digests off, including the RFC 8058 one-click POST a mail client sends on its own
(`List-Unsubscribe=One-Click`), which carries no CSRF token, hence csrf_exempt: the signed
token is the credential.
"""
from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core import signing
from django.db import transaction
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt

from chat.models import EmailSettings

UNSUBSCRIBE_SALT = "chat.digests.unsubscribe"


def unsubscribe_url(user_id):
    token = signing.dumps(user_id, salt=UNSUBSCRIBE_SALT)
    return f"{settings.CHAT_SITE_URL}/accounts/unsubscribe/{token}/"


def user_of(token):
    """The account id a link was signed for, if it is genuine and the account still exists."""
    try:
        user_id = signing.loads(token, salt=UNSUBSCRIBE_SALT)
    except signing.BadSignature:
        return None
    return user_id if get_user_model()._default_manager.filter(pk=user_id).exists() else None


class EmailSettingsForm(forms.Form):
    email = forms.EmailField(required=False, max_length=254, help_text="Leave empty to get no email.")
    notify = forms.BooleanField(required=False, label="Email me about direct messages and mentions I have not read",
                                help_text=f"One email for all of them, {settings.CHAT_EMAIL_DELAY_SECS // 60} "
                                          f"minutes after the first, unless you read them before.")


def wants_email(user):
    row = EmailSettings.objects.filter(user=user).first()
    return row is None or row.notify


@login_required
def email_settings(request):
    user = request.user
    saved = False
    if request.method == "POST":
        form = EmailSettingsForm(request.POST)
        if form.is_valid():
            with transaction.atomic():
                user.email = form.cleaned_data["email"]
                user.save(update_fields=["email"])
                set_notify(user.pk, form.cleaned_data["notify"])
            saved = True
    else:
        form = EmailSettingsForm(initial={"email": user.email, "notify": wants_email(user)})
    return render(request, "chat/email_settings.html", {"form": form, "saved": saved})


def set_notify(user_id, notify):
    EmailSettings.objects.update_or_create(user_id=user_id, defaults={"notify": notify})


@csrf_exempt
def unsubscribe(request, token):
    user_id = user_of(token)
    if user_id is None:
        return render(request, "chat/unsubscribe.html", {"invalid": True}, status=400)
    if request.method == "POST":
        set_notify(user_id, False)
        return render(request, "chat/unsubscribe.html", {"done": True})
    return render(request, "chat/unsubscribe.html", {})
