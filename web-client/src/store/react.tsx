// React bindings of the store: the context that injects it, and hooks that
// subscribe pages to its observable views.

import { createContext, useContext, useEffect, useState, useSyncExternalStore, type ReactNode } from 'react';
import type { TokenStore } from '../auth';
import type { Readable } from './observable';
import type { ListFilter, ListView, TestrunStore, TestrunWatch } from './TestrunStore';

const StoreContext = createContext<TestrunStore | null>(null);
const TokenContext = createContext<TokenStore | null>(null);

/** Makes the store (and the API token store) available to every route. */
export function StoreProvider(props: { store: TestrunStore; tokens: TokenStore; children: ReactNode }) {
  return (
    <StoreContext.Provider value={props.store}>
      <TokenContext.Provider value={props.tokens}>{props.children}</TokenContext.Provider>
    </StoreContext.Provider>
  );
}

export function useStore(): TestrunStore {
  const store = useContext(StoreContext);
  if (store === null) throw new Error('useStore outside StoreProvider');
  return store;
}

export function useTokens(): TokenStore {
  const tokens = useContext(TokenContext);
  if (tokens === null) throw new Error('useTokens outside StoreProvider');
  return tokens;
}

/** The current token, re-rendering when it changes. */
export function useToken(): string {
  const tokens = useTokens();
  return useSyncExternalStore(tokens.subscribe, tokens.get);
}

const EMPTY: Readable<undefined> = { getState: () => undefined, subscribe: () => () => {} };

/** The state of an observable view, or undefined while there is none. */
export function useReadable<S>(r: Readable<S> | undefined): S | undefined {
  const source: Readable<S | undefined> = r ?? EMPTY;
  return useSyncExternalStore(source.subscribe, source.getState);
}

/** A live list page for this filter; reopened when the filter or size changes. */
export function useListView(filter: ListFilter, pageSize: number): ListView | undefined {
  const store = useStore();
  const [view, setView] = useState<ListView>();
  const { status, username } = filter;
  useEffect(() => {
    const v = store.openList(
      { ...(status !== undefined && { status }), ...(username !== undefined && { username }) },
      pageSize,
    );
    setView(v);
    return () => v.close();
  }, [store, status, username, pageSize]);
  return view;
}

/** The shared live view of one Testrun while the calling page is mounted. */
export function useTestrunWatch(id: bigint | undefined): TestrunWatch | undefined {
  const store = useStore();
  const [watch, setWatch] = useState<TestrunWatch>();
  useEffect(() => {
    if (id === undefined) return undefined;
    const { watch: w, release } = store.acquireTestrun(id);
    setWatch(w);
    return release;
  }, [store, id]);
  return watch !== undefined && watch.id === id ? watch : undefined;
}

/** The time now, refreshed every `intervalMs` while `active`. */
export function useNow(active: boolean, intervalMs = 1000): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    if (!active) return undefined;
    setNow(Date.now());
    const timer = setInterval(() => setNow(Date.now()), intervalMs);
    return () => clearInterval(timer);
  }, [active, intervalMs]);
  return now;
}
