// Preact with htm: components written as tagged templates, as plain ES modules, no build step. Text put into a
// template is always text: Preact sets it as a text node, never as HTML.
import { h, render } from "../vendor/preact.js";
import htm from "../vendor/htm.js";

export const html = htm.bind(h);
export { render };
export { useEffect, useMemo, useRef, useState, useCallback } from "../vendor/preact-hooks.js";
