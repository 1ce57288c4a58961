from django.urls import path

from alerts import rule_views, setting_views, views

app_name = "alerts"

urlpatterns = [
    path("", views.alert_list, name="list"),
    path("<int:alert_id>/", views.alert_detail, name="detail"),
    path("<int:alert_id>/acknowledge/", views.acknowledge, name="acknowledge"),
    path("rules/", rule_views.rule_list, name="rules"),
    path("rules/new/", rule_views.rule_new, name="rule-new"),
    path("rules/from-preset/", rule_views.rule_from_preset, name="rule-from-preset"),
    path("rules/<int:rule_id>/", rule_views.rule_edit, name="rule-edit"),
    path("rules/<int:rule_id>/toggle/", rule_views.rule_toggle, name="rule-toggle"),
    path("rules/<int:rule_id>/test/", rule_views.rule_test, name="rule-test"),
    path("rules/<int:rule_id>/delete/", rule_views.rule_delete, name="rule-delete"),
    path("destinations/", setting_views.destination_list, name="destinations"),
    path("destinations/new/", setting_views.destination_edit, name="destination-new"),
    path("destinations/<int:destination_id>/", setting_views.destination_edit, name="destination-edit"),
    path("destinations/<int:destination_id>/test/", setting_views.destination_test, name="destination-test"),
    path("destinations/<int:destination_id>/enable/", setting_views.destination_enable, name="destination-enable"),
    path("destinations/<int:destination_id>/delete/", setting_views.destination_delete, name="destination-delete"),
    path("silences/", setting_views.silence_list, name="silences"),
    path("silences/new/", setting_views.silence_new, name="silence-new"),
    path("silences/<int:silence_id>/expire/", setting_views.silence_expire, name="silence-expire"),
    path("mute-windows/", setting_views.mute_window_list, name="mute-windows"),
    path("mute-windows/new/", setting_views.mute_window_edit, name="mute-window-new"),
    path("mute-windows/<int:window_id>/", setting_views.mute_window_edit, name="mute-window-edit"),
    path("mute-windows/<int:window_id>/delete/", setting_views.mute_window_delete, name="mute-window-delete"),
    path("watch-lists/", setting_views.watch_list_list, name="watch-lists"),
    path("watch-lists/new/", setting_views.watch_list_edit, name="watch-list-new"),
    path("watch-lists/<int:list_id>/", setting_views.watch_list_edit, name="watch-list-edit"),
    path("watch-lists/<int:list_id>/delete/", setting_views.watch_list_delete, name="watch-list-delete"),
]
