// The dashboard's only script, served from /assets/dashboard.js so that the pages can forbid
// inline scripts (Content-Security-Policy). Each page works without it: it only submits a
// form when one of its pickers changes.
for (const picker of document.querySelectorAll("select[data-submit]")) {
  picker.addEventListener("change", () => {
    const button = picker.dataset.submit && document.getElementById(picker.dataset.submit);
    if (button) {
      button.click();
    } else {
      picker.form.submit();
    }
  });
}
