"use strict";
// django-celery-beat's crontab help on the periodic task form, as its template's inline script
// did it: the chosen schedule's reading after the field's help text.
(function ($) {
  const readable = JSON.parse(document.getElementById("readable-crontabs").textContent);
  const help = JSON.parse(document.getElementById("crontab-help").textContent);
  $(".field-crontab_translation").hide();
  $(".field-crontab").change(function () {
    $(".field-crontab .help")
      .text(help)
      .append($("<br>"), document.createTextNode("Translation: " + readable[$("#id_crontab").val()]));
  });
})(django.jQuery);
