// The interactive API documentation: reads /api/v1/openapi.json, lists every operation with its
// parameters, request body and responses, and sends real requests with the user's token.
// A static file because the CSP forbids inline scripts; every text from the spec goes into
// the page with textContent, never as HTML.
(function () {
  "use strict";

  var root = document.getElementById("api-docs");
  var strings = document.getElementById("api-strings");
  var tokenInput = document.getElementById("api-token");
  if (!root || !strings) { return; }
  var T = strings.dataset;
  var METHODS = ["get", "post", "put", "patch", "delete"];
  var spec = null;

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      if (key === "text") { node.textContent = attrs[key]; } else { node.setAttribute(key, attrs[key]); }
    });
    (children || []).forEach(function (child) {
      if (child) { node.appendChild(typeof child === "string" ? document.createTextNode(child) : child); }
    });
    return node;
  }

  function pretty(value) { return JSON.stringify(value, null, 2); }

  function resolve(schema) {
    var seen = 0;
    while (schema && schema.$ref && seen < 20) {
      schema = spec.components.schemas[schema.$ref.split("/").pop()];
      seen += 1;
    }
    return schema || {};
  }

  function typeText(schema) {
    if (!schema) { return ""; }
    if (schema.$ref) { return schema.$ref.split("/").pop(); }
    if (schema.enum) { return schema.enum.join(" | "); }
    if (schema.anyOf) { return schema.anyOf.map(typeText).join(" | "); }
    if (schema.type === "array") { return typeText(schema.items) + "[]"; }
    return schema.type || "";
  }

  // An example value for a schema, so the body field starts as something sensible.
  function sample(schema, depth) {
    schema = resolve(schema);
    depth = depth || 0;
    if (depth > 4) { return null; }
    if (schema.default !== undefined) { return schema.default; }
    if (schema.enum) { return schema.enum[0]; }
    if (schema.anyOf) { return sample(schema.anyOf[0], depth + 1); }
    if (schema.type === "object") {
      var out = {};
      (schema.required || Object.keys(schema.properties || {})).forEach(function (name) {
        out[name] = sample((schema.properties || {})[name] || {}, depth + 1);
      });
      return out;
    }
    if (schema.type === "array") { return []; }
    if (schema.type === "integer" || schema.type === "number") { return schema.minimum || 1; }
    if (schema.type === "boolean") { return false; }
    return "";
  }

  function paramTable(params) {
    var head = el("tr", {}, [T.name, T.where, T.type, T.required, T.description].map(function (h) {
      return el("th", { scope: "col", text: h });
    }));
    var rows = params.map(function (p) {
      return el("tr", {}, [
        el("td", {}, [el("code", { text: p.name })]),
        el("td", { text: p.in }),
        el("td", { text: typeText(p.schema) }),
        el("td", { text: p.required ? T.yes : T.no }),
        el("td", { text: p.description || "" })
      ]);
    });
    return el("table", { "class": "api-params" }, [el("thead", {}, [head]), el("tbody", {}, rows)]);
  }

  function schemaBlock(schema) {
    return el("pre", { "class": "api-schema" }, [el("code", { text: pretty(schema) })]);
  }

  function showResult(out, response, started) {
    var type = response.headers.get("Content-Type") || "";
    var line = el("p", { "class": "api-status", "data-status": String(response.status) },
      [T.status + " " + response.status + " · " + type]);
    out.replaceChildren(line);
    if (type.indexOf("json") !== -1 || type.indexOf("text/") === 0 && type.indexOf("csv") === -1 ||
        type.indexOf("pem") !== -1) {
      return response.text().then(function (text) {
        var shown = text;
        try { shown = pretty(JSON.parse(text)); } catch (e) { /* not JSON: shown as sent */ }
        out.appendChild(el("pre", { "class": "api-response" }, [el("code", { text: shown })]));
      });
    }
    return response.blob().then(function (blob) {
      var name = (response.headers.get("Content-Disposition") || "").split("filename=")[1] || "download";
      var link = el("a", { href: URL.createObjectURL(blob), download: name, text: T.download + " " + name });
      out.appendChild(el("p", {}, [T.file.replace("{type}", type).replace("{size}", blob.size), " ", link]));
    });
  }

  function tryForm(path, method, op) {
    var params = op.parameters || [];
    var form = el("form", { "class": "api-try", novalidate: "" });
    var fields = {};
    params.forEach(function (p) {
      var id = op.operationId + "-" + p.in + "-" + p.name;
      var input = el("input", { id: id, name: p.name, "data-in": p.in });
      if (p.schema && p.schema.type === "integer") { input.setAttribute("inputmode", "numeric"); }
      fields[p.name] = input;
      form.appendChild(el("label", { "for": id }, [p.name + " (" + p.in + ")"]));
      form.appendChild(input);
    });
    var content = (op.requestBody || {}).content || {};
    var kinds = Object.keys(content);
    var kindSelect = null, jsonArea = null, multipart = null;
    if (kinds.length > 1) {
      var selectId = op.operationId + "-content-type";
      kindSelect = el("select", { id: selectId }, kinds.map(function (k) { return el("option", { value: k, text: k }); }));
      form.appendChild(el("label", { "for": selectId, text: T.contentType }));
      form.appendChild(kindSelect);
    }
    if (content["application/json"]) {
      var areaId = op.operationId + "-body";
      var body = content["application/json"];
      jsonArea = el("textarea", { id: areaId, rows: "6", spellcheck: "false", "class": "api-body" });
      jsonArea.value = pretty(body.example !== undefined ? body.example : sample(body.schema));
      form.appendChild(el("label", { "for": areaId, text: T.bodyJson }));
      form.appendChild(jsonArea);
    }
    if (content["multipart/form-data"]) {
      var schema = resolve(content["multipart/form-data"].schema);
      multipart = el("fieldset", { "class": "api-multipart" }, [el("legend", { text: T.bodyForm })]);
      Object.keys(schema.properties || {}).forEach(function (name) {
        var prop = schema.properties[name];
        var binary = prop.format === "binary" || (prop.items && prop.items.format === "binary");
        var id = op.operationId + "-form-" + name;
        var input = el("input", { id: id, name: name, type: binary ? "file" : "text" });
        if (prop.type === "array") { input.setAttribute("multiple", ""); }
        multipart.appendChild(el("label", { "for": id, text: name }));
        multipart.appendChild(input);
      });
      form.appendChild(multipart);
    }
    function chosen() { return kindSelect ? kindSelect.value : kinds[0]; }
    function sync() {
      if (jsonArea) { jsonArea.hidden = chosen() !== "application/json"; jsonArea.previousSibling.hidden = jsonArea.hidden; }
      if (multipart) { multipart.hidden = chosen() !== "multipart/form-data"; }
    }
    if (kindSelect) { kindSelect.addEventListener("change", sync); }
    sync();
    var button = el("button", { type: "submit", text: T.send });
    var out = el("div", { "class": "api-result", "aria-live": "polite" });
    form.appendChild(button);
    form.appendChild(out);
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var headers = { "Accept": "application/json" };
      var token = tokenInput ? tokenInput.value.trim() : "";
      var isPublic = Array.isArray(op.security) && op.security.length === 0;
      if (!token && !isPublic) { out.replaceChildren(el("p", { "class": "flash error", role: "alert", text: T.noToken })); return; }
      if (token) { headers.Authorization = "Bearer " + token; }
      var url = path, query = [];
      params.forEach(function (p) {
        var value = fields[p.name].value;
        if (p.in === "path") { url = url.replace("{" + p.name + "}", encodeURIComponent(value)); }
        else if (value !== "") { query.push(encodeURIComponent(p.name) + "=" + encodeURIComponent(value)); }
      });
      if (query.length) { url += "?" + query.join("&"); }
      var init = { method: method.toUpperCase(), headers: headers, credentials: "omit" };
      if (kinds.length && chosen() === "application/json") {
        var text = jsonArea.value.trim();
        if (text) {
          try { JSON.parse(text); } catch (e) { out.replaceChildren(el("p", { "class": "flash error", role: "alert", text: T.badJson })); return; }
          headers["Content-Type"] = "application/json";
          init.body = text;
        }
      } else if (kinds.length) {
        var data = new FormData();
        Array.prototype.forEach.call(multipart.querySelectorAll("input"), function (input) {
          if (input.type === "file") {
            Array.prototype.forEach.call(input.files, function (file) { data.append(input.name, file); });
          } else if (input.value !== "") {
            data.append(input.name, input.value);
          }
        });
        init.body = data;
      }
      button.disabled = true;
      button.textContent = T.sending;
      fetch(url, init).then(function (response) {
        return showResult(out, response);
      }).catch(function () {
        out.replaceChildren(el("p", { "class": "flash error", role: "alert", text: T.networkError }));
      }).then(function () {
        button.disabled = false;
        button.textContent = T.send;
      });
    });
    return form;
  }

  function operationBlock(path, method, op) {
    var summary = el("summary", {}, [
      el("span", { "class": "api-method api-" + method, text: method.toUpperCase() }), " ",
      el("code", { text: path }), " ", op.summary || ""
    ]);
    var parts = [summary, el("p", { text: op.description || "" })];
    if ((op.parameters || []).length) {
      parts.push(el("h4", { text: T.parameters }), el("div", { "class": "table-scroll" }, [paramTable(op.parameters)]));
    }
    if (op.requestBody) {
      parts.push(el("h4", { text: T.requestBody }));
      Object.keys(op.requestBody.content).forEach(function (type) {
        parts.push(el("p", {}, [el("code", { text: type })]), schemaBlock(op.requestBody.content[type].schema));
      });
    }
    parts.push(el("h4", { text: T.responses }));
    var list = el("dl", { "class": "api-responses" });
    Object.keys(op.responses).forEach(function (status) {
      var resp = op.responses[status];
      var types = Object.keys(resp.content || {});
      list.appendChild(el("dt", {}, [el("code", { text: status }), " " + types.join(", ")]));
      var schema = types.length ? resp.content[types[0]].schema : null;
      list.appendChild(el("dd", {}, [resp.description || "", schema ? " — " + typeText(schema) : ""]));
    });
    parts.push(list);
    parts.push(el("h4", { text: T.try }), tryForm(path, method, op));
    return el("details", { "class": "api-op", id: "op-" + op.operationId, "data-operation": op.operationId }, parts);
  }

  function render() {
    var byTag = {};
    Object.keys(spec.paths).forEach(function (path) {
      METHODS.forEach(function (method) {
        var op = spec.paths[path][method];
        if (!op) { return; }
        var tag = (op.tags || [""])[0];
        (byTag[tag] = byTag[tag] || []).push(operationBlock(path, method, op));
      });
    });
    var nodes = [el("h2", { text: T.operations })];
    (spec.tags || []).forEach(function (tag) {
      if (!byTag[tag.name]) { return; }
      nodes.push(el("section", { "class": "api-tag" }, [el("h3", { text: tag.name })].concat(byTag[tag.name])));
    });
    nodes.push(el("h2", { id: "schemas", text: T.schemas }));
    Object.keys(spec.components.schemas).forEach(function (name) {
      nodes.push(el("details", { "class": "api-schema-def", id: "schema-" + name }, [
        el("summary", {}, [el("code", { text: name })]), schemaBlock(spec.components.schemas[name])
      ]));
    });
    root.replaceChildren.apply(root, nodes);
  }

  fetch(root.dataset.specUrl, { headers: { "Accept": "application/json" }, credentials: "omit" })
    .then(function (response) {
      if (!response.ok) { throw new Error(String(response.status)); }
      return response.json();
    })
    .then(function (data) { spec = data; render(); })
    .catch(function () {
      root.replaceChildren(el("p", { "class": "flash error", role: "alert", text: T.loadFailed }));
    });
})();
