// headwater dashboard: live updates. One server-sent event stream per page; on a
// change notice, the page's live region (#live) asks the server for itself again
// (htmx, `hw-refresh`), at most every 150 ms. No build step, no framework.
(function () {
  "use strict";
  var pending = null;
  var dot = null;
  function refresh() {
    pending = null;
    htmx.trigger(document.body, "hw-refresh");
  }
  function connect() {
    var stream = new EventSource("/sse");
    stream.addEventListener("hello", function () {
      if (dot) { dot.className = "live-dot on"; }
    });
    stream.addEventListener("change", function () {
      if (pending === null) { pending = setTimeout(refresh, 150); }
    });
    stream.onerror = function () {
      // EventSource reconnects by itself (retry: 1000); the dot says it is off meanwhile.
      if (dot) { dot.className = "live-dot"; }
    };
  }
  document.addEventListener("DOMContentLoaded", function () {
    dot = document.getElementById("live-status");
    connect();
  });
  // After an action, refresh at once: the object's status moves right away.
  document.addEventListener("htmx:afterRequest", function (event) {
    var path = (event.detail && event.detail.pathInfo && event.detail.pathInfo.requestPath) || "";
    if (path.indexOf("/act/") === 0 && pending === null) { pending = setTimeout(refresh, 50); }
  });
})();
