import { useNavigate } from 'react-router';
import { fieldErrorsOf } from '../lib/errors';
import { NewTestrunPage } from '../pages/NewTestrunPage';
import { useStore } from '../store/react';

const LAST_USERNAME = 'testrunner.lastUsername';

function lastUsername(): string {
  try {
    return localStorage.getItem(LAST_USERNAME) ?? '';
  } catch {
    return '';
  }
}

/** `/new`: creates the Testrun, then goes to it; server errors go beside their fields. */
export function NewRoute() {
  const store = useStore();
  const navigate = useNavigate();
  const created = (run: { id: bigint }, username: string) => {
    try {
      localStorage.setItem(LAST_USERNAME, username.trim());
    } catch {
      // Not remembering the name is fine.
    }
    void navigate(`/testruns/${run.id}`);
  };
  return (
    <NewTestrunPage
      initialUsername={lastUsername()}
      onSubmit={async (input) => {
        try {
          created(await store.createTestrun(input), input.username);
          return null;
        } catch (err) {
          return fieldErrorsOf(err);
        }
      }}
      onSubmitWorkspace={async (input, onProgress) => {
        try {
          created(await store.createWorkspaceTestrun(input, onProgress), input.username);
          return null;
        } catch (err) {
          return fieldErrorsOf(err);
        }
      }}
    />
  );
}
