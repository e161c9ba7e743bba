// Keelson's page behaviour: forms that call the JSON API, the locations picker, live scan
// progress, the issue panel, accepting a held run and deleting a connection (the queue sorts on
// the server).
// Server-rendered HTML comes in escaped; anything built here uses textContent.
(function () {
  "use strict";
  var csrfMeta = document.querySelector('meta[name="csrf-token"]');
  var csrf = csrfMeta ? csrfMeta.getAttribute("content") : "";

  function api(method, url, body) {
    var opts = {
      method: method,
      credentials: "same-origin",
      headers: { "X-CSRF-Token": csrf, "Accept": "application/json" }
    };
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    return fetch(url, opts).then(function (r) {
      var ct = r.headers.get("content-type") || "";
      var parse = ct.indexOf("json") >= 0 ? r.json() : r.text();
      return parse.then(function (data) { return { ok: r.ok, status: r.status, data: data }; });
    });
  }

  function errorText(res) {
    if (res.data && res.data.error) return res.data.error.message;
    return "request failed (" + res.status + ")";
  }

  function $(sel, root) { return (root || document).querySelector(sel); }
  function $all(sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); }

  // ---- sign out
  document.addEventListener("click", function (e) {
    var t = e.target.closest("[data-action]");
    if (!t) return;
    var action = t.getAttribute("data-action");
    if (action === "signout") {
      e.preventDefault();
      api("POST", "/signout").then(function () { location.href = "/signin"; });
    } else if (action === "instructions" && $("#instructions")) {
      e.preventDefault();
      var box = $("#instructions");
      box.hidden = !box.hidden;
      if (!box.hidden) box.scrollIntoView({ behavior: "smooth" });
    } else if (action === "verify") {
      verify(t);
    } else if (action === "locations") {
      toggleLocations();
    } else if (action === "locations-live") {
      liveLocations(t);
    } else if (action === "save-locations") {
      saveLocations(t);
    } else if (action === "scan") {
      startScan(t);
    } else if (action === "delete-connection") {
      deleteConnection(t);
    } else if (action === "accept-run") {
      acceptRun(t);
    } else if (action === "close-panel") {
      $("#panel").hidden = true;
      $all("tr.selected").forEach(function (r) { r.classList.remove("selected"); });
    } else if (action === "unsuppress") {
      var id = $("#panel .panel-head").getAttribute("data-issue");
      api("DELETE", "/api/v1/issues/" + id + "/suppression").then(function () { openIssue(id); });
    }
  });

  // ---- the connection form
  var form = $("#connect-form");
  function applyOnlyWhen() {
    $all("[data-only-when-key]").forEach(function (field) {
      var key = field.getAttribute("data-only-when-key");
      var want = field.getAttribute("data-only-when-value");
      var input = $('[name="' + CSS.escape(key) + '"]', form);
      var show = !input || input.value === want;
      field.hidden = !show;
    });
  }
  if (form) {
    applyOnlyWhen();
    form.addEventListener("change", applyOnlyWhen);
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      $all(".field-error", form).forEach(function (el) { el.textContent = ""; });
      $("#connect-error").textContent = "";
      $("#connect-ok").textContent = "";
      var body = { plugin: form.getAttribute("data-plugin"), name: $("#f-name").value.trim(), settings: {}, secrets: {} };
      $all(".field[data-field]", form).forEach(function (field) {
        if (field.hidden) return;
        var input = $("input, select", field);
        if (!input || input.value === "") return;
        if (input.getAttribute("data-secret") === "true") body.secrets[input.name] = input.value;
        else body.settings[input.name] = input.value;
      });
      var spinner = $(".spinner", form);
      spinner.hidden = false;
      form.classList.add("busy");
      api("POST", "/api/v1/connections", body).then(function (res) {
        spinner.hidden = true;
        form.classList.remove("busy");
        if (res.ok) {
          var acct = res.data.account || {};
          $("#connect-ok").textContent = "✔ Connected and verified: " + (acct.display_name || "") + " — opening the connection…";
          setTimeout(function () { location.href = "/connections/" + encodeURIComponent(body.name); }, 900);
          return;
        }
        var err = res.data && res.data.error;
        var slot = err && err.field ? $('[data-error-for="' + CSS.escape(err.field) + '"]', form) : null;
        (slot || $("#connect-error")).textContent = errorText(res);
      });
    });
  }

  // ---- verify, locations, scan
  var conn = $("#connection");
  var connName = conn ? conn.getAttribute("data-connection") : null;
  function connUrl(tail) { return "/api/v1/connections/" + encodeURIComponent(connName) + tail; }

  function verify(button) {
    var out = $("#verify-result");
    out.className = "verify-result pending";
    out.textContent = "Verifying…";
    button.disabled = true;
    api("POST", connUrl("/verify")).then(function (res) {
      button.disabled = false;
      if (res.ok) {
        out.className = "verify-result ok";
        var a = res.data.account;
        out.textContent = "✔ Connected as " + a.display_name + " (" + a.id + ")";
      } else {
        out.className = "verify-result bad";
        out.textContent = "✘ " + errorText(res);
      }
    });
  }

  function wireTree(box) {
    $all("input.reg", box).forEach(function (reg) {
      if (reg.getAttribute("data-partly") === "true") reg.indeterminate = true;
      reg.addEventListener("change", function () {
        var name = reg.getAttribute("data-registry");
        $all("input.repo", box).forEach(function (r) {
          if (r.getAttribute("data-registry") === name) r.checked = reg.checked;
        });
        reg.indeterminate = false;
      });
    });
    $all("input.repo", box).forEach(function (repo) {
      repo.addEventListener("change", function () {
        var name = repo.getAttribute("data-registry");
        var sib = $all("input.repo", box).filter(function (r) { return r.getAttribute("data-registry") === name; });
        var on = sib.filter(function (r) { return r.checked; }).length;
        var reg = $all("input.reg", box).filter(function (r) { return r.getAttribute("data-registry") === name; })[0];
        if (!reg) return;
        reg.checked = on === sib.length;
        reg.indeterminate = on > 0 && on < sib.length;
      });
    });
  }

  function toggleLocations() {
    var box = $("#locations");
    if (!box.hidden) { box.hidden = true; return; }
    box.hidden = false;
    box.innerHTML = '<p class="muted">Reading registries and repositories…</p>';
    fetch("/connections/" + encodeURIComponent(connName) + "/locations", { credentials: "same-origin" })
      .then(function (r) { return r.text(); })
      .then(function (html) { box.innerHTML = html; wireTree(box); });
  }

  // Listing through the plugin is an operator's action, so it is a POST with the CSRF token.
  function liveLocations(button) {
    var box = $("#locations");
    button.disabled = true;
    var note = $("#locations-note");
    note.className = "ok-note";
    note.textContent = "Listing live from the plugin…";
    api("POST", "/connections/" + encodeURIComponent(connName) + "/locations/live").then(function (res) {
      if (typeof res.data === "string") { box.innerHTML = res.data; wireTree(box); return; }
      button.disabled = false;
      note.className = "form-error";
      note.textContent = errorText(res);
    });
  }

  function saveLocations(button) {
    var box = $("#locations");
    var regs = $all("input.reg", box);
    var rules = [];
    var everything = true;
    regs.forEach(function (reg) {
      var name = reg.getAttribute("data-registry");
      var repos = $all("input.repo", box).filter(function (r) { return r.getAttribute("data-registry") === name; });
      var on = repos.filter(function (r) { return r.checked; });
      if (reg.checked && on.length === repos.length) {
        rules.push({ action: "select", pattern: name });
      } else {
        everything = false;
        on.forEach(function (r) { rules.push({ action: "select", pattern: name + "/" + r.getAttribute("data-repository") }); });
      }
    });
    if (everything) rules = [];
    else if (rules.length === 0) rules = [{ action: "deselect", pattern: "*" }];
    var note = $("#locations-note");
    button.disabled = true;
    api("PUT", connUrl("/locations"), { rules: rules }).then(function (res) {
      button.disabled = false;
      note.className = res.ok ? "ok-note" : "form-error";
      note.textContent = res.ok ? "✔ Saved" : errorText(res);
    });
  }

  function deleteConnection(button) {
    var question = "Delete connection \u201c" + connName + "\u201d? Its scans stop and its issues leave the queue; " +
      "its history stays in the audit log and its stored secrets are wiped.";
    if (!window.confirm(question)) return;
    button.disabled = true;
    api("DELETE", connUrl("")).then(function (res) {
      if (res.ok) { location.href = "/connectors"; return; }
      button.disabled = false;
      var out = $("#verify-result");
      out.className = "verify-result bad";
      out.textContent = "\u2718 " + errorText(res);
    });
  }

  // A held run's resolution is applied only when an operator confirms it.
  function acceptRun(button) {
    var run = button.getAttribute("data-run");
    var n = button.getAttribute("data-would-resolve");
    var question = "Accept run " + run + "? It resolves the " + n + " open findings that run no longer saw; " +
      "the accept is recorded in the audit log.";
    if (!window.confirm(question)) return;
    button.disabled = true;
    api("POST", "/api/v1/runs/" + encodeURIComponent(run) + "/accept").then(function (res) {
      if (res.ok) { location.reload(); return; }
      button.disabled = false;
      var out = button.parentNode.querySelector(".accept-error");
      if (out) out.textContent = " \u2718 " + errorText(res);
    });
  }

  function startScan(button) {
    var box = $("#scan-progress");
    box.hidden = false;
    box.className = "card scan-progress running";
    $(".scan-message", box).textContent = "Starting…";
    button.disabled = true;
    api("POST", connUrl("/scan")).then(function (res) {
      if (!res.ok) {
        button.disabled = false;
        box.className = "card scan-progress bad";
        $(".scan-message", box).textContent = "✘ " + errorText(res);
        return;
      }
      poll(button);
    });
  }

  function poll(button) {
    var box = $("#scan-progress");
    api("GET", connUrl("/scan")).then(function (res) {
      if (!res.ok) { setTimeout(function () { poll(button); }, 500); return; }
      var s = res.data;
      var msg = s.message + " · " + s.images + " images · " + s.findings + " findings";
      $(".scan-message", box).textContent = (s.state === "running" ? "Scanning: " : "Scan " + s.state + ": ") + msg;
      if (s.state === "running") {
        setTimeout(function () { poll(button); }, 400);
        return;
      }
      button.disabled = false;
      // Partial and held runs stored what they read; the page's banner says what is missing.
      var look = s.state === "complete" ? "ok" : (s.state === "partial" || s.state === "held" ? "warn" : "bad");
      box.className = "card scan-progress " + look;
      box.setAttribute("data-state", s.state);
      setTimeout(function () { location.reload(); }, 1500);
    });
  }

  // ---- the queue: panel, filters, sorting
  function openIssue(id) {
    var panel = $("#panel");
    if (!panel) return;
    $all("tr.issue-row").forEach(function (r) { r.classList.toggle("selected", r.getAttribute("data-issue") === String(id)); });
    fetch("/issues/" + encodeURIComponent(id) + "/panel", { credentials: "same-origin" })
      .then(function (r) { return r.text(); })
      .then(function (html) {
        panel.innerHTML = html;
        panel.hidden = false;
        var sf = $("#suppress-form", panel);
        if (sf) sf.addEventListener("submit", function (e) {
          e.preventDefault();
          var reason = $("#s-reason", sf).value;
          var exp = $("#s-expires", sf).value;
          api("POST", "/api/v1/issues/" + id + "/suppression", {
            reason: reason, expires_at: exp ? exp + "T00:00:00Z" : null
          }).then(function (res) {
            if (res.ok) { openIssue(id); markRow(id, "suppressed"); }
            else $(".form-error", sf).textContent = errorText(res);
          });
        });
      });
  }

  function markRow(id, status) {
    var row = $('tr.issue-row[data-issue="' + id + '"]');
    if (!row) return;
    var cell = row.cells[row.cells.length - 1];
    cell.textContent = "";
    var pill = document.createElement("span");
    pill.className = "pill warn";
    pill.textContent = status;
    cell.appendChild(pill);
  }

  $all("tr.issue-row").forEach(function (row) {
    row.addEventListener("click", function (e) {
      if (e.target.closest("a")) return;
      openIssue(row.getAttribute("data-issue"));
    });
    row.addEventListener("keydown", function (e) {
      if (e.key === "Enter") openIssue(row.getAttribute("data-issue"));
    });
  });

  var filters = $("#filters");
  if (filters) {
    $all("select", filters).forEach(function (s) {
      s.addEventListener("change", function () { filters.submit(); });
    });
  }
})();
