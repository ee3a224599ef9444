//! Learning the encoder's adapters: the training pass is the encoder's own computation, and
//! learning moves examples toward their levels. Uses the installed encoder (see risk_model.rs).

use domain::CrisisLevel;
use safety::corpus;
use safety::model::adapt::{self, AdaptSettings};
use safety::model::{EncoderFiles, EncoderParts, SentenceEncoder, ENCODER_DIR};

fn files() -> EncoderFiles {
    EncoderFiles::in_dir(&offline::testing::models_dir().join(ENCODER_DIR))
}

const TEXTS: [&str; 3] = [
    "i have three exams next week and i have not started",
    "i gave my cat to my sister so nobody has to deal with it",
    "ok",
];

#[test]
fn the_training_pass_computes_what_the_encoder_computes() {
    let encoder = SentenceEncoder::load(&files()).expect("encoder");
    let expected = encoder.embed(&TEXTS).expect("embeddings");
    let parts = EncoderParts::read(&files()).expect("encoder files");
    let ours: Vec<Vec<f32>> = adapt::plain_embeddings(&parts, &TEXTS)
        .and_then(|t| t.to_vec2())
        .expect("training pass");
    for (a, b) in expected.iter().zip(&ours) {
        let worst = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(worst < 1e-4, "the passes differ by {worst}");
    }
}

#[test]
fn learning_moves_examples_toward_their_levels() {
    let examples = corpus::examples();
    // A few whole utterances of each level.
    let mut picked = Vec::new();
    for level in [CrisisLevel::None, CrisisLevel::Concern, CrisisLevel::Crisis] {
        picked.extend(
            (0..examples.len())
                .filter(|&i| examples[i].level == level && examples[i].earlier.is_empty())
                .step_by(97)
                .take(6),
        );
    }
    let settings = AdaptSettings {
        layers: 1,
        epochs: 12,
        batch: 6,
        learning_rate: 5e-3,
        ..AdaptSettings::CHOSEN
    };
    let mut losses = Vec::new();
    let adapters = adapt::learn(
        &EncoderParts::read(&files()).expect("encoder files"),
        &settings,
        &examples,
        |i| picked.contains(&i),
        corpus::fingerprint(),
        |_, loss| losses.push(loss),
    )
    .expect("learning");
    assert_eq!(losses.len(), settings.epochs);
    assert!(
        losses[settings.epochs - 1] < losses[0] * 0.5,
        "the loss did not fall: {losses:?}"
    );
    // Six corrections in the one adapted layer, and they change what the encoder says.
    assert_eq!(adapters.matrices.len(), 6);
    let adapted = SentenceEncoder::new(
        EncoderParts::read(&files()).expect("encoder files"),
        Some(&adapters),
    )
    .expect("adapted encoder");
    let plain = SentenceEncoder::load(&files()).expect("encoder");
    let (a, p) = (
        adapted.embed(&TEXTS[..1]).unwrap(),
        plain.embed(&TEXTS[..1]).unwrap(),
    );
    let cosine: f32 = a[0].iter().zip(&p[0]).map(|(x, y)| x * y).sum();
    assert!(cosine < 0.9999, "the adapters changed nothing");
}
