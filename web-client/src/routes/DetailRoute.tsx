import { useCallback, useEffect, useMemo, useRef, useState, useSyncExternalStore } from 'react';
import { useNavigate, useParams, useSearchParams } from 'react-router';
import { Test_Status, type Test, type TestCase_Status } from '../gen/testrunner/v1/testrun_pb';
import { describeError } from '../lib/errors';
import { NotFoundPage } from '../pages/NotFoundPage';
import { TestrunDetailPage, type LogSource } from '../pages/TestrunDetailPage';
import { useNow, useStore, useTestrunWatch } from '../store/react';
import { CaseList, type CaseListState } from '../store/CaseList';
import type { TestrunWatch } from '../store/TestrunStore';

const INT64_MAX = 2n ** 63n - 1n;
const noSubscribe = () => () => {};
const NO_CASES: CaseListState = { cases: [], loading: false };
const noCases = () => NO_CASES;

/** A Testrun id from the URL, or undefined when it cannot be one. */
export function parseId(raw: string | undefined): bigint | undefined {
  if (raw === undefined || !/^\d{1,19}$/.test(raw)) return undefined;
  const id = BigInt(raw);
  return id > 0n && id <= INT64_MAX ? id : undefined;
}

/** The test to show when none is chosen: a running one, else a failed one, else the first. */
export function defaultTest(tests: readonly Test[]): Test | undefined {
  const failed = [Test_Status.FAILED, Test_Status.TIMED_OUT, Test_Status.ERROR];
  return (
    tests.find((t) => t.status === Test_Status.RUNNING) ??
    tests.find((t) => failed.includes(t.status)) ??
    tests[0]
  );
}

/** `/testruns/:id`: a live TestrunWatch feeding the detail page. */
export function DetailRoute() {
  const id = parseId(useParams().id);
  if (id === undefined) return <NotFoundPage title="Testrun not found" message="That is not a Testrun id." />;
  return <Detail id={id} />;
}

function Detail({ id }: { id: bigint }) {
  const watch = useTestrunWatch(id);
  if (watch === undefined) return null;
  return <LiveDetail id={id} watch={watch} />;
}

function LiveDetail({ id, watch }: { id: bigint; watch: TestrunWatch }) {
  const store = useStore();
  const navigate = useNavigate();
  const state = useSyncExternalStore(watch.subscribe, watch.getState);
  const logVersion = useSyncExternalStore(watch.logs.subscribe, watch.logs.getVersion);
  const [params, setParams] = useSearchParams();
  const tests = state.testrun?.tests ?? [];
  const chosen = params.get('test');
  // A test chosen in the URL wins; otherwise stay on the first default pick, so
  // the log does not jump when another test starts.
  const [autoPick, setAutoPick] = useState<string>();
  const byName = (name: string | null | undefined) =>
    name === null || name === undefined ? undefined : tests.find((t) => t.name === name);
  const selected = byName(chosen) ?? byName(autoPick) ?? defaultTest(tests);
  useEffect(() => {
    if (chosen === null && autoPick === undefined && selected !== undefined) setAutoPick(selected.name);
  }, [chosen, autoPick, selected]);

  const [follow, setFollow] = useState(true);
  const [query, setQuery] = useState('');
  const [searchStatus, setSearchStatus] = useState<string>();
  const [focus, setFocus] = useState<{ line: number; seq: number }>();
  const searchAbort = useRef<AbortController | null>(null);
  const selectedId = selected?.id;
  // The attempt whose lines show, for a test that ran more than once.
  const [attemptPick, setAttemptPick] = useState<number>();
  const attempt = (selected?.attempts.length ?? 0) > 1 ? attemptPick : undefined;
  const fullTotal = selectedId === undefined ? 0 : watch.logs.total(selectedId);
  const range =
    selectedId === undefined || attempt === undefined ? undefined : watch.attemptRange(selectedId, attempt, fullTotal);
  const rangeUnknown = attempt !== undefined && range === undefined;
  useEffect(() => {
    if (rangeUnknown) watch.scanHistory();
  }, [watch, rangeUnknown]);
  // Positions in the shown log are relative to the attempt's first line.
  const offset = range?.from ?? 0;
  const shownTotal = attempt === undefined ? fullTotal : range === undefined ? 0 : range.to - range.from;

  // A new test (or attempt) starts at its end, following, with no search position.
  useEffect(() => {
    setAttemptPick(undefined);
  }, [selectedId]);
  useEffect(() => {
    setFollow(true);
    setFocus(undefined);
    setSearchStatus(undefined);
    searchAbort.current?.abort();
  }, [selectedId, attempt]);
  useEffect(() => () => searchAbort.current?.abort(), []);

  const ensureRange = useCallback(
    (from: number, to: number) => {
      if (selectedId !== undefined) watch.logs.ensure(selectedId, offset + from, offset + to);
    },
    [watch, selectedId, offset],
  );
  const getLine = useCallback(
    (i: number) => (selectedId === undefined ? undefined : watch.logs.line(selectedId, offset + i)),
    [watch, selectedId, offset],
  );
  const log: LogSource | undefined = useMemo(
    () => (selectedId === undefined ? undefined : { total: shownTotal, getLine, ensureRange, version: logVersion }),
    [selectedId, shownTotal, getLine, ensureRange, logVersion],
  );

  const find = (direction: 1 | -1) => {
    if (selectedId === undefined || query === '') return;
    searchAbort.current?.abort();
    const abort = new AbortController();
    searchAbort.current = abort;
    const total = shownTotal;
    // From the current hit, else from the top (next) or the end (previous).
    const from = focus !== undefined ? focus.line + direction : direction > 0 ? 0 : total - 1;
    if (from < 0 || from >= total) {
      setSearchStatus(focus !== undefined ? 'no more matches' : 'no match');
      return;
    }
    setSearchStatus('searching…');
    setFollow(false);
    watch.logs.find(selectedId, query, offset + from, direction, abort.signal).then(
      (found) => {
        if (abort.signal.aborted) return;
        // A hit outside the shown attempt is no hit.
        const line = found < offset || found >= offset + total ? -1 : found - offset;
        if (line < 0) {
          setSearchStatus(focus !== undefined ? 'no more matches' : 'no match');
          return;
        }
        setSearchStatus(`line ${line + 1}`);
        setFocus({ line, seq: (focus?.seq ?? 0) + 1 });
      },
      (err: unknown) => {
        if (!abort.signal.aborted) setSearchStatus(describeError(err));
      },
    );
  };

  // The selected test's cases: a new query when the test, a filter, or its
  // counts (new cases arrived) change.
  const [caseStatus, setCaseStatus] = useState<TestCase_Status>();
  const [caseName, setCaseName] = useState('');
  const casesTotal = selected?.cases?.total ?? 0;
  const hasCases = casesTotal > 0;
  const queryKey = `${String(selectedId)}|${caseStatus ?? ''}|${caseName}|${casesTotal}`;
  const [caseList, setCaseList] = useState<CaseList>();
  useEffect(() => {
    if (selectedId === undefined || !hasCases) {
      setCaseList(undefined);
      return;
    }
    const list = new CaseList(store.client, { testrunId: id, testId: selectedId, status: caseStatus, nameContains: caseName });
    setCaseList(list);
    return () => list.dispose();
    // queryKey covers the test, the filters and the count.
  }, [queryKey, hasCases]);
  const caseState = useSyncExternalStore(
    caseList?.subscribe ?? noSubscribe,
    caseList?.getState ?? noCases,
  );
  // With an attempt picked, only the cases that attempt reported.
  const shownCases = attempt === undefined ? caseState.cases : caseState.cases.filter((c) => c.attempt === attempt);
  const cases =
    selected !== undefined && (hasCases || selected.note !== '')
      ? {
          cases: shownCases,
          total: attempt === undefined ? casesTotal : shownCases.length,
          loading: caseState.loading,
          error: caseState.error,
          note: selected.note,
          status: caseStatus,
          onStatusChange: setCaseStatus,
          name: caseName,
          onNameChange: setCaseName,
          queryKey,
        }
      : undefined;

  const running = state.testrun?.tests.some((t) => t.status === Test_Status.RUNNING) ?? false;
  const now = useNow(running || (state.testrun?.startedAt !== undefined && state.testrun.finishedAt === undefined));

  return (
    <TestrunDetailPage
      id={id}
      state={state}
      now={now}
      selectedTest={selected}
      onSelectTest={(t) =>
        setParams(
          (p) => {
            const next = new URLSearchParams(p);
            next.set('test', t.name);
            return next;
          },
          { replace: true },
        )
      }
      log={log}
      attempt={{ selected: attempt, onSelect: setAttemptPick }}
      cases={cases}
      liveLines={(t) => watch.logs.total(t.id)}
      follow={follow}
      onFollowChange={setFollow}
      search={{
        query,
        onQueryChange: (q) => {
          setQuery(q);
          setFocus(undefined);
          setSearchStatus(undefined);
        },
        onFind: find,
        status: searchStatus,
        focus,
      }}
      logUrl={(name) => store.logUrl(id, name)}
      onCancel={async () => {
        await store.cancelTestrun(id);
      }}
      onRerun={async (onlyFailed) => {
        const next = await store.rerunTestrun(id, onlyFailed);
        void navigate(`/testruns/${next.id}`);
      }}
      onDelete={async () => {
        await store.deleteTestrun(id);
        void navigate('/', { replace: true });
      }}
    />
  );
}
