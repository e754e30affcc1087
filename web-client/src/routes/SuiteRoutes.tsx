import { Code, ConnectError } from '@connectrpc/connect';
import { useEffect, useState } from 'react';
import { useParams, useSearchParams } from 'react-router';
import type { Suite, SuiteSummary } from '../gen/testrunner/v1/testrun_pb';
import { describeError } from '../lib/errors';
import { SuitePage, type HistoryState } from '../pages/SuitePage';
import { SuitesPage } from '../pages/SuitesPage';
import { useStore } from '../store/react';

/** `/suites`: ListSuites, a page at a time. */
export function SuitesRoute() {
  const store = useStore();
  const [suites, setSuites] = useState<SuiteSummary[]>();
  const [next, setNext] = useState('');
  const [error, setError] = useState<string>();
  const [loading, setLoading] = useState(false);

  const load = async (token: string, signal?: AbortSignal) => {
    setLoading(true);
    try {
      const res = await store.client.listSuites({ pageToken: token }, { signal });
      if (signal?.aborted) return;
      setSuites((old) => (token === '' ? res.suites : [...(old ?? []), ...res.suites]));
      setNext(res.nextPageToken);
      setError(undefined);
    } catch (err) {
      if (!signal?.aborted) setError(describeError(err));
    } finally {
      if (!signal?.aborted) setLoading(false);
    }
  };
  useEffect(() => {
    const abort = new AbortController();
    void load('', abort.signal);
    return () => abort.abort();
    // Loaded once per visit.
  }, [store]);

  return <SuitesPage suites={suites} error={error} loading={loading} hasMore={next !== ''} onMore={() => void load(next)} />;
}

/** `/suites/:name`: GetSuite, and GetTestHistory of the test named in `?test=`. */
export function SuiteRoute() {
  const store = useStore();
  const name = useParams().name ?? '';
  const [params, setParams] = useSearchParams();
  const testName = params.get('test');
  const [suite, setSuite] = useState<Suite>();
  const [notFound, setNotFound] = useState(false);
  const [error, setError] = useState<string>();
  const [history, setHistory] = useState<HistoryState>();

  useEffect(() => {
    const abort = new AbortController();
    setSuite(undefined);
    setNotFound(false);
    setError(undefined);
    store.client.getSuite({ suite: name }, { signal: abort.signal }).then(
      (s) => {
        if (!abort.signal.aborted) setSuite(s);
      },
      (err: unknown) => {
        if (abort.signal.aborted) return;
        if (err instanceof ConnectError && err.code === Code.NotFound) setNotFound(true);
        else setError(describeError(err));
      },
    );
    return () => abort.abort();
  }, [store, name]);

  useEffect(() => {
    if (testName === null) {
      setHistory(undefined);
      return undefined;
    }
    const abort = new AbortController();
    setHistory({ name: testName });
    store.client.getTestHistory({ suite: name, name: testName }, { signal: abort.signal }).then(
      (h) => {
        if (!abort.signal.aborted) setHistory({ name: testName, history: h });
      },
      (err: unknown) => {
        if (!abort.signal.aborted) setHistory({ name: testName, error: describeError(err) });
      },
    );
    return () => abort.abort();
  }, [store, name, testName]);

  return (
    <SuitePage
      name={name}
      suite={suite}
      notFound={notFound}
      error={error}
      selected={history}
      onSelectTest={(t) =>
        setParams(
          (p) => {
            const n = new URLSearchParams(p);
            n.set('test', t);
            return n;
          },
          { replace: true },
        )
      }
    />
  );
}
