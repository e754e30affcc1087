// The one place that creates the console's transport.
//
// The coordinator serves this console and the API on the same origin, so the
// base URL is the page's own origin (no CORS). tonic-web accepts binary
// grpc-web only: not the Connect protocol, not grpc-web+json. Everything else
// receives the transport by injection (see App), so tests can pass a
// `createRouterTransport` instead.

import type { Transport } from '@connectrpc/connect';
import { createGrpcWebTransport } from '@connectrpc/connect-web';
import { authInterceptor, type TokenStore } from './auth';

/** The grpc-web transport to the coordinator that served this page. */
export function createAppTransport(tokens: TokenStore, baseUrl = window.location.origin): Transport {
  return createGrpcWebTransport({
    baseUrl,
    useBinaryFormat: true,
    interceptors: [authInterceptor(tokens)],
  });
}
