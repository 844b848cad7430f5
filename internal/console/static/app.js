// Coffer console: small progressive enhancements. Every page works without
// this script; it is served from 'self' under a CSP that forbids inline script.
"use strict";
(function () {
  // Policy validation as you type: the server compiles the document.
  var doc = document.getElementById("doc");
  var form = document.getElementById("policy-form");
  var out = document.getElementById("problems");
  if (doc && form && out) {
    var timer = null, seq = 0;
    var check = function () {
      var mine = ++seq;
      var body = new URLSearchParams();
      body.set("csrf", form.elements.csrf.value);
      body.set("doc", doc.value);
      body.set("format", form.elements.format.value);
      fetch("/ui/policy/validate", {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/x-www-form-urlencoded" }, body: body
      }).then(function (r) { return r.ok ? r.json() : null; }).then(function (j) {
        if (mine !== seq || !j) { return; }
        out.textContent = "";
        if (j.ok) {
          var ok = document.createElement("span");
          ok.className = "badge allow";
          ok.textContent = "compiles";
          out.appendChild(ok);
          return;
        }
        var ul = document.createElement("ul");
        (j.problems || []).forEach(function (p) {
          var li = document.createElement("li");
          li.textContent = p;
          ul.appendChild(li);
        });
        out.appendChild(ul);
      }).catch(function () {});
    };
    var later = function () { clearTimeout(timer); timer = setTimeout(check, 400); };
    doc.addEventListener("input", later);
    form.elements.format.addEventListener("change", later);
  }

  // Typed confirmation: the destructive button stays off until both match.
  document.querySelectorAll("form[data-confirm-form]").forEach(function (f) {
    var src = f.querySelector("[data-confirm-source]");
    var dst = f.querySelector("[data-confirm-target]");
    var btn = f.querySelector("button[type=submit]");
    var sync = function () { btn.disabled = !(src.value !== "" && src.value === dst.value); };
    src.addEventListener("input", sync);
    dst.addEventListener("input", sync);
    sync();
  });

  // Secrets shown once: select all on focus for copying.
  document.querySelectorAll("[data-select-on-focus]").forEach(function (el) {
    el.addEventListener("focus", function () { el.select(); });
  });

  // Session expiry: say so when it has passed.
  var exp = document.getElementById("session-expiry");
  if (exp) {
    var end = Math.min(Date.parse(exp.dataset.end), Date.parse(exp.dataset.idle));
    var tick = function () {
      var left = Math.round((end - Date.now()) / 1000);
      if (left <= 0) {
        exp.textContent = "Session ended: sign in again.";
        exp.classList.add("ended");
        return;
      }
      exp.title = "ends in " + Math.floor(left / 60) + " min " + (left % 60) + " s unless used";
      setTimeout(tick, 1000);
    };
    tick();
  }
  // Rewrap and reindex progress: polled while a job is pending or running.
  var jobs = document.getElementById("jobs");
  if (jobs && window.fetch) {
    var busy = function () {
      return Array.prototype.some.call(jobs.querySelectorAll(".job-text"), function (e) {
        var st = e.getAttribute("data-state");
        return st === "pending" || st === "running";
      });
    };
    var poll = function () {
      fetch(jobs.getAttribute("data-jobs-src"), { credentials: "same-origin" }).then(function (r) {
        return r.ok ? r.json() : null;
      }).then(function (j) {
        if (!j || !j.jobs) { return; }
        j.jobs.forEach(function (x) {
          var box = jobs.querySelector('[data-job="' + x.name + '"]');
          if (!box) { return; }
          var bar = box.querySelector("progress"), text = box.querySelector(".job-text");
          var pct = x.total > 0 ? Math.min(100, Math.floor(x.done * 100 / x.total)) : 100;
          bar.max = Math.max(x.total, 1);
          bar.value = x.total > 0 ? x.done : 1;
          text.setAttribute("data-state", x.state);
          text.textContent = x.state + ": " + x.done + " of " + x.total + " (" + pct + "%)" + (x.node ? " on " + x.node : "");
        });
        if (busy()) { setTimeout(poll, 1000); }
      }).catch(function () {});
    };
    if (busy()) { setTimeout(poll, 1000); }
    // After a rotation the rewrap is asked for: follow it.
    var keyForm = document.querySelector('form[action="/ui/admin/keys"]');
    if (keyForm && document.querySelector(".flash")) { setTimeout(poll, 300); }
  }
  // The overview's figures: the page paints at once, the day's counts
  // follow (server-rendered HTML from the same origin).
  var panel = document.getElementById("overview-panel");
  if (panel && window.fetch) {
    fetch(panel.getAttribute("data-panel-src"), { credentials: "same-origin" }).then(function (r) {
      if (r.redirected) { window.location.assign(r.url); return null; }
      return r.ok ? r.text() : null;
    }).then(function (html) {
      if (html === null) { return; }
      panel.innerHTML = html;
      panel.setAttribute("aria-busy", "false");
    }).catch(function () {});
  }
})();
