"""URL routes. Socket.IO's /socket.io/ is answered before Django by socketio.WSGIApp."""
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path, re_path

from chat import accounts, emailprefs, views

ROOM = r"(?P<room>[a-z0-9_-]{1,64})"

urlpatterns = [
    path("", views.index, name="index"),
    re_path(rf"^r/{ROOM}/$", views.room_page, name="room"),
    path("api/rooms/", views.api_rooms, name="api-rooms"),
    re_path(rf"^api/rooms/{ROOM}/messages/?$", views.api_messages, name="api-messages"),
    path("api/search/", views.api_search, name="api-search"),
    path("healthz", views.healthz, name="healthz"),
    path("metrics", views.metrics, name="metrics"),
    path("accounts/signup/", accounts.SignupView.as_view(), name="signup"),
    path("accounts/login/", accounts.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/password_change/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path("accounts/password_change/done/", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"),
    path("accounts/settings/", emailprefs.email_settings, name="email_settings"),
    path("accounts/unsubscribe/<str:token>/", emailprefs.unsubscribe, name="unsubscribe"),
    path("admin/", admin.site.urls),
]
