class CreateJobTables < ActiveRecord::Migration[6.1]
  def change
    create_table :billing_reports do |t|
      t.string :label, null: false
      t.integer :orders_count, null: false
      t.integer :total_cents, null: false
      t.datetime :created_at, null: false
    end
    create_table :exchange_rates do |t|
      t.string :currency, null: false
      t.decimal :rate, precision: 12, scale: 6, null: false
      t.datetime :fetched_at, null: false
    end
    create_table :sessions do |t|
      t.string :token, null: false
      t.references :user, foreign_key: true
      t.datetime :expires_at, null: false
    end
    create_table :task_runs do |t|
      t.string :name, null: false
      t.string :arguments
      t.string :source, null: false
      t.datetime :created_at, null: false
    end
  end
end
