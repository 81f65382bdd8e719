// A refused decision or an invalid settings form comes back as 400, 403 or 409 with the
// region and the reason in it. htmx 2 swaps no 4xx response by default; elements marked
// data-swap-errors have theirs swapped like a 200, so the person sees why. (A 404 stays an
// error: there is nothing to show in place of a request that is not there.)
if (!window.flightdeckSwapRefusals) {
  window.flightdeckSwapRefusals = true;
  document.addEventListener("htmx:beforeSwap", (event) => {
    const status = event.detail.xhr.status;
    const source = event.detail.requestConfig && event.detail.requestConfig.elt;
    if ([400, 403, 409].includes(status) && source && source.closest("[data-swap-errors]")) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });
}
