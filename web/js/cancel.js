// Cancelling from the patient's own link: /cancel.html#<join token> (the booking page's
// confirmation links here with the token of the patient's join link). The token rides in
// the fragment, is removed from the address bar at once, and goes to the server only in
// the body of the cancel request (POST /api/v1/bookings/cancel). The reason is optional.

import { publicApi } from "./rest.js";
import { $, el, showScreen } from "./ui.js";

const state = { screen: "ask", status: null, problem: null };
const token = decodeURIComponent(location.hash.replace(/^#/, "").split("&")[0] || "");
if (location.hash) history.replaceState(history.state, "", location.pathname);

function message(title, body) {
  $("#message-title").textContent = title;
  $("#message-body").replaceChildren(el("p", {}, body));
  state.screen = "message";
  showScreen("message");
}

$("#cancel-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const reason = $("#reason-input").value.trim();
  const button = $("#cancel-button");
  button.disabled = true;
  try {
    const body = reason ? { token, cancellation_reason: reason } : { token };
    const { data } = await publicApi("POST", "/bookings/cancel", body);
    state.status = data.status;
    message("Your appointment is cancelled", "Thank you for letting us know. You can book another time from the clinic's booking page.");
  } catch (error) {
    state.problem = error.code;
    if (error.code === "INVALID_STATE_TRANSITION") {
      message("This appointment is already cancelled", "There is nothing more to do.");
    } else if (error.code === "NOT_FOUND") {
      message("This link cannot cancel an appointment", "It may have been replaced by a newer one, or the appointment has passed. Contact the clinic.");
    } else {
      message("The appointment could not be cancelled", `Please try again in a moment. (${error.message})`);
    }
  } finally {
    button.disabled = false;
  }
});

if (!token) message("This link is incomplete", "Open the cancel link from your booking again.");

window.vestibule = { state: () => ({ ...state }), log: () => [] };
