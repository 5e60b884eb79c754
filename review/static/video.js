// Video review: clicking a finding or a cue seeks the player; the cue being played is marked;
// the expert's time-range form takes the player's current time. (No inline scripts: CSP.)
(function () {
  "use strict";
  var video = document.getElementById("video");
  if (!video) { return; }
  document.addEventListener("click", function (event) {
    var target = event.target.closest("[data-seek]");
    if (target) {
      video.currentTime = parseFloat(target.getAttribute("data-seek")) || 0;
      video.play().catch(function () { /* autoplay may be refused; the seek stands */ });
      video.scrollIntoView({ block: "nearest" });
      return;
    }
    var take = event.target.closest("[data-take-time]");
    if (take) {
      var field = document.getElementById(take.getAttribute("data-take-time"));
      if (field) { field.value = video.currentTime.toFixed(1); }
    }
  });
  var cues = Array.prototype.slice.call(document.querySelectorAll(".cues li[data-start]"));
  video.addEventListener("timeupdate", function () {
    var now = video.currentTime;
    cues.forEach(function (cue) {
      var on = now >= parseFloat(cue.getAttribute("data-start")) &&
        now < parseFloat(cue.getAttribute("data-end"));
      cue.classList.toggle("playing", on);
    });
  });
})();
