// The optional API token, kept in localStorage, and the interceptor that
// sends it.
//
// A coordinator started with an API token refuses Create, Cancel and Delete
// without `authorization: Bearer <token>` (UNAUTHENTICATED). The token is
// attached to every call once set: reads accept it too, and one rule is
// simpler to reason about than a list of write methods.

import type { Interceptor } from '@connectrpc/connect';

const STORAGE_KEY = 'testrunner.apiToken';

/** Where the token lives; an in-memory one serves tests. */
export interface TokenStore {
  get(): string;
  set(token: string): void;
  subscribe(listener: () => void): () => void;
}

/** A token store over `localStorage` (falls back to memory when unavailable). */
export function createTokenStore(storage: Storage | undefined = safeLocalStorage()): TokenStore {
  let memory = '';
  const listeners = new Set<() => void>();
  return {
    get() {
      try {
        return storage?.getItem(STORAGE_KEY) ?? memory;
      } catch {
        return memory;
      }
    },
    set(token: string) {
      memory = token.trim();
      try {
        if (memory === '') storage?.removeItem(STORAGE_KEY);
        else storage?.setItem(STORAGE_KEY, memory);
      } catch {
        // Private mode or quota: the in-memory copy still works for this tab.
      }
      for (const l of listeners) l();
    },
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}

function safeLocalStorage(): Storage | undefined {
  try {
    return globalThis.localStorage;
  } catch {
    return undefined;
  }
}

/** Adds `authorization: Bearer <token>` to each call while a token is set. */
export function authInterceptor(tokens: Pick<TokenStore, 'get'>): Interceptor {
  return (next) => (req) => {
    const token = tokens.get();
    if (token !== '' && !req.header.has('authorization')) {
      req.header.set('authorization', `Bearer ${token}`);
    }
    return next(req);
  };
}
