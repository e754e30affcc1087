import { useEffect, useState } from 'react';
import { useSearchParams } from 'react-router';
import { parseTestrunStatus, testrunStatusName } from '../lib/status';
import { TestrunListPage } from '../pages/TestrunListPage';
import { useListView, useNow, useReadable } from '../store/react';

const USERNAME_DEBOUNCE_MS = 300;

/** `/`: feeds the list page from a live ListView; filters live in the URL. */
export function ListRoute() {
  const [params, setParams] = useSearchParams();
  const status = parseTestrunStatus(params.get('status'));
  const username = params.get('user') ?? '';
  const [pageSize, setPageSize] = useState(50);
  const [usernameInput, setUsernameInput] = useState(username);

  // The URL wins when it changes from outside (back button, link).
  useEffect(() => setUsernameInput(username), [username]);

  // Apply the typed username once typing pauses.
  useEffect(() => {
    if (usernameInput.trim() === username) return undefined;
    const timer = setTimeout(() => {
      setParams(
        (p) => {
          const next = new URLSearchParams(p);
          if (usernameInput.trim() === '') next.delete('user');
          else next.set('user', usernameInput.trim());
          return next;
        },
        { replace: true },
      );
    }, USERNAME_DEBOUNCE_MS);
    return () => clearTimeout(timer);
  }, [usernameInput, username, setParams]);

  const view = useListView(
    { ...(status !== undefined && { status }), ...(username !== '' && { username }) },
    pageSize,
  );
  const state = useReadable(view);
  const running = state?.testruns.some((t) => t.startedAt !== undefined && t.finishedAt === undefined) ?? false;
  const now = useNow(running);
  if (state === undefined || view === undefined) return null;

  return (
    <TestrunListPage
      state={state}
      now={now}
      usernameInput={usernameInput}
      onStatusChange={(s) =>
        setParams((p) => {
          const next = new URLSearchParams(p);
          if (s === undefined) next.delete('status');
          else next.set('status', testrunStatusName(s));
          return next;
        })
      }
      onUsernameChange={setUsernameInput}
      onNextPage={() => view.nextPage()}
      onPrevPage={() => view.prevPage()}
      onPageSizeChange={setPageSize}
    />
  );
}
