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
  return (
    <NewTestrunPage
      initialUsername={lastUsername()}
      onSubmit={async (input) => {
        try {
          const run = await store.createTestrun(input);
          try {
            localStorage.setItem(LAST_USERNAME, input.username.trim());
          } catch {
            // Not remembering the name is fine.
          }
          void navigate(`/testruns/${run.id}`);
          return null;
        } catch (err) {
          return fieldErrorsOf(err);
        }
      }}
    />
  );
}
