import { useCallback, useEffect, useState } from 'react';
import type { RunnerInfo, RunnerToken } from '../gen/testrunner/v1/admin_pb';
import { describeError } from '../lib/errors';
import { RunnersPage } from '../pages/RunnersPage';
import { useStore } from '../store/react';

/** How often the runner list is read again (there is no watch RPC for runners). */
export const RUNNERS_REFRESH_MS = 2000;

/** `/runners`: ListRunners every 2 s, the token list on load and after each change. */
export function RunnersRoute(props: { refreshMs?: number }) {
  const store = useStore();
  const refreshMs = props.refreshMs ?? RUNNERS_REFRESH_MS;
  const [runners, setRunners] = useState<RunnerInfo[]>();
  const [error, setError] = useState<string>();
  const [tokens, setTokens] = useState<RunnerToken[]>();
  const [tokensError, setTokensError] = useState<string>();

  const loadRunners = useCallback(
    async (signal?: AbortSignal) => {
      try {
        const res = await store.admin.listRunners({}, { signal });
        if (signal?.aborted) return;
        setRunners(res.runners);
        setError(undefined);
      } catch (err) {
        if (!signal?.aborted) setError(describeError(err));
      }
    },
    [store],
  );
  const loadTokens = useCallback(
    async (signal?: AbortSignal) => {
      try {
        const res = await store.admin.listRunnerTokens({}, { signal });
        if (signal?.aborted) return;
        setTokens(res.tokens);
        setTokensError(undefined);
      } catch (err) {
        if (!signal?.aborted) setTokensError(describeError(err));
      }
    },
    [store],
  );

  useEffect(() => {
    const abort = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    // One read at a time: the next starts `refreshMs` after the last ended.
    const tick = async () => {
      await loadRunners(abort.signal);
      if (!abort.signal.aborted) timer = setTimeout(() => void tick(), refreshMs);
    };
    void tick();
    void loadTokens(abort.signal);
    return () => {
      abort.abort();
      clearTimeout(timer);
    };
  }, [loadRunners, loadTokens, refreshMs]);

  return (
    <RunnersPage
      runners={runners}
      error={error}
      tokens={tokens}
      tokensError={tokensError}
      onDrain={async (r) => {
        const drained = await store.admin.drainRunner({ id: r.id });
        setRunners((old) => old?.map((x) => (x.id === drained.id ? drained : x)));
      }}
      onCreateToken={async (name) => {
        const res = await store.admin.createRunnerToken({ name });
        void loadTokens();
        return res.secret;
      }}
      onRevokeToken={async (name) => {
        await store.admin.revokeRunnerToken({ name });
        await loadTokens();
      }}
    />
  );
}
