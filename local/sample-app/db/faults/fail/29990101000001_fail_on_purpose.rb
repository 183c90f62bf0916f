# Loaded only when asked (FAKE_EXIT_CODE non-zero, or SAMPLE_APP_FAIL_MIGRATION=1; see
# config/application.rb). It changes the schema, then hits a real PostgreSQL error: the whole
# migration is rolled back (transactional DDL) and never recorded, so it fails every time.
class FailOnPurpose < ActiveRecord::Migration[6.1]
  def up
    add_column :users, :fault_probe, :string
    execute "CREATE INDEX index_orders_on_status ON orders (status)" # exists: PG::DuplicateTable
  end

  def down; end
end
