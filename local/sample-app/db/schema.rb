# This file is auto-generated from the current state of the database. Instead
# of editing this file, please use the migrations feature of Active Record to
# incrementally modify your database, and then regenerate this schema definition.
#
# This file is the source Rails uses to define your schema when running `bin/rails
# db:schema:load`. When creating a new database, `bin/rails db:schema:load` tends to
# be faster and is potentially less error prone than running all of your
# migrations from scratch. Old migrations may fail to apply correctly if those
# migrations use external dependencies or application code.
#
# It's strongly recommended that you check this file into your version control system.

ActiveRecord::Schema.define(version: 2024_08_01_000000) do

  # These are extensions that must be enabled in order to support this database
  enable_extension "plpgsql"

  create_table "billing_reports", force: :cascade do |t|
    t.string "label", null: false
    t.integer "orders_count", null: false
    t.integer "total_cents", null: false
    t.datetime "created_at", null: false
  end

  create_table "exchange_rates", force: :cascade do |t|
    t.string "currency", null: false
    t.decimal "rate", precision: 12, scale: 6, null: false
    t.datetime "fetched_at", null: false
  end

  create_table "orders", force: :cascade do |t|
    t.bigint "user_id", null: false
    t.integer "amount_cents", null: false
    t.string "status", default: "open", null: false
    t.datetime "created_at", precision: 6, null: false
    t.datetime "updated_at", precision: 6, null: false
    t.index ["status"], name: "index_orders_on_status"
    t.index ["user_id"], name: "index_orders_on_user_id"
  end

  create_table "sessions", force: :cascade do |t|
    t.string "token", null: false
    t.bigint "user_id"
    t.datetime "expires_at", null: false
    t.index ["user_id"], name: "index_sessions_on_user_id"
  end

  create_table "task_runs", force: :cascade do |t|
    t.string "name", null: false
    t.string "arguments"
    t.string "source", null: false
    t.datetime "created_at", null: false
  end

  create_table "users", force: :cascade do |t|
    t.string "email", null: false
    t.string "name", null: false
    t.datetime "created_at", precision: 6, null: false
    t.datetime "updated_at", precision: 6, null: false
    t.integer "orders_total_cents", default: 0, null: false
    t.datetime "totals_recomputed_at"
    t.index ["email"], name: "index_users_on_email", unique: true
  end

  add_foreign_key "orders", "users"
  add_foreign_key "sessions", "users"
end
