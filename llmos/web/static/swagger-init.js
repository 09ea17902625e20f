// Swagger UI for /docs from the vendored files; requests (the spec too) carry the console's key.
"use strict";
window.addEventListener("DOMContentLoaded", () => {
  const key = sessionStorage.getItem("llmos.apiKey");
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
    layout: "BaseLayout",
    deepLinking: true,
    validatorUrl: null,
    requestInterceptor: (request) => {
      if (key && !request.headers.Authorization) request.headers.Authorization = "Bearer " + key;
      return request;
    },
  });
});
