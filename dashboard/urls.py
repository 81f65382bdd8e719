from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from dashboard import views

urlpatterns = [
    path("", include("history.page_urls")),
    path("", include("interventions.page_urls")),
    path("runs/<str:run_uuid>/", views.run_page, name="run"),
    path("agents/", views.agents_page, name="agents"),
    path("", include("access.urls")),
    path("", include("interventions.approval_urls")),
    path("", include("interventions.settings_urls")),
    path("", include("audit.urls")),
    path("", include("evidence.urls")),
    path("", include("temporal.page_urls")),
    path("", include("governance.urls")),
    # Sign-in, sign-out and password change only: password reset needs outgoing mail, which
    # is not configured (an open reset form would also tell strangers which addresses exist).
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path(
        "accounts/password_change/",
        auth_views.PasswordChangeView.as_view(),
        name="password_change",
    ),
    path(
        "accounts/password_change/done/",
        auth_views.PasswordChangeDoneView.as_view(),
        name="password_change_done",
    ),
    path("admin/", admin.site.urls),
    path("api/v1/", include("history.urls")),
    path("api/v1/", include("interventions.urls")),
    path("api/v1/", include("temporal.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
]
